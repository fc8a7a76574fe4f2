"""raydesk.web: the demo page's origin is escaped; pages carry their security headers."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.testclient import TestClient

from raydesk.web import PAGE_POLICY, add_web_routes


def _client(tmp_path: Path) -> TestClient:
    (tmp_path / "console").mkdir()
    (tmp_path / "console" / "index.html").write_text("<h1>console</h1>")
    (tmp_path / "demo.html").write_text('<script src="{{ORIGIN}}/widget.js"></script>')
    (tmp_path / "widget.js").write_text("void 0;")
    app = FastAPI()
    add_web_routes(app, tmp_path)
    return TestClient(app)


def test_demo_origin_is_html_escaped(tmp_path: Path) -> None:
    """A Host header with markup never reaches the page as markup (Starlette drops a host
    with quotes or angle brackets; what it keeps is escaped)."""
    client = _client(tmp_path)
    page = client.get("/demo", headers={"host": 'x"><img src=y>'}).text
    assert "<img" not in page
    page = client.get("/demo", headers={"host": "shop&co.example"}).text
    assert 'src="http://shop&amp;co.example/widget.js"' in page


def test_pages_and_widget_carry_their_headers(tmp_path: Path) -> None:
    """The console has the strict policy; widget.js may be loaded by any site."""
    client = _client(tmp_path)
    console = client.get("/console/")
    assert console.text == "<h1>console</h1>"
    assert console.headers["content-security-policy"] == PAGE_POLICY
    widget = client.get("/widget.js")
    assert widget.headers["cross-origin-resource-policy"] == "cross-origin"
    assert "content-security-policy" not in widget.headers


def test_console_redirects_to_its_folder(tmp_path: Path) -> None:
    """/console answers 308 to /console/ so relative module paths resolve."""
    response = _client(tmp_path).get("/console", follow_redirects=False)
    assert (response.status_code, response.headers["location"]) == (308, "/console/")
