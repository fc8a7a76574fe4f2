"""The web front ends, served by the gateway as static files from the repository's ``web/``.

- ``/console/``: the agent console (plain ES modules, no build step).
- ``/widget.js`` and ``/widget.css``: the customer widget that a site embeds with one tag.
- ``/demo`` (and ``/demo.css``): a demo shop page that embeds the widget exactly as a
  customer's site would.

Pages are sent with a strict Content-Security-Policy (scripts, styles and connections
from this origin only; no inline script or style), so even a rendering bug cannot run
injected script. The REST API answers any origin (CORS, without credentials): the widget
runs on other sites, and every call carries its bearer token in a header, never a cookie.
"""

from __future__ import annotations

import html
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

WEB_DIR = Path(__file__).resolve().parents[1] / "web"

PAGE_POLICY = ("default-src 'self'; script-src 'self'; style-src 'self'; "
               "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; "
               "base-uri 'none'; form-action 'self'; object-src 'none'")
PAGE_HEADERS = {
    "Content-Security-Policy": PAGE_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    # Revalidated on every load (ETag): an upgrade reaches agents at their next reload.
    "Cache-Control": "no-cache",
}
# widget.js and widget.css are loaded by other sites' pages.
EMBED_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Cross-Origin-Resource-Policy": "cross-origin",
    "Cache-Control": "no-cache",
}


class _Files(StaticFiles):
    """Static files with fixed response headers."""

    def __init__(self, directory: Path, headers: dict[str, str]) -> None:
        super().__init__(directory=directory, html=True, check_dir=False)
        self._headers = headers

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        response.headers.update(self._headers)
        return response


def add_web_routes(app: FastAPI, web_dir: Path = WEB_DIR) -> None:
    """Mount the console, the widget and the demo page, and allow cross-origin REST."""
    app.add_middleware(CORSMiddleware, allow_origins=["*"], allow_credentials=False,
                       allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
                       allow_headers=["Authorization", "Content-Type"], max_age=600)
    top_level = {"widget.js": _Files(web_dir, EMBED_HEADERS),
                 "widget.css": _Files(web_dir, EMBED_HEADERS),
                 "demo.css": _Files(web_dir, PAGE_HEADERS)}

    @app.get("/console", include_in_schema=False)
    async def console() -> RedirectResponse:
        # The console's modules are addressed relative to /console/.
        return RedirectResponse("/console/", status_code=308)

    def serve_file(name: str, files: _Files) -> None:
        async def get(request: Request) -> Response:
            return await files.get_response(name, request.scope)

        app.add_api_route(f"/{name}", get, methods=["GET", "HEAD"], include_in_schema=False)

    for name, files in top_level.items():
        serve_file(name, files)

    @app.api_route("/demo", methods=["GET", "HEAD"], include_in_schema=False,
                   response_class=HTMLResponse)
    async def demo(request: Request) -> HTMLResponse:
        """The demo shop, with the embed tag pointing at the origin it was loaded from."""
        try:
            page = (web_dir / "demo.html").read_text("utf-8")
        except OSError:
            return HTMLResponse("demo page not installed", status_code=404)
        origin = str(request.base_url).rstrip("/")
        return HTMLResponse(page.replace("{{ORIGIN}}", html.escape(origin, quote=True)),
                            headers=PAGE_HEADERS)

    app.mount("/console", _Files(web_dir / "console", PAGE_HEADERS), name="console")
