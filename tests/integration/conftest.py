"""One Ray session, one Valkey and one running raydesk for the whole integration suite."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, BrowserContext, Dialog, Page, async_playwright

from raydesk.config import load_config
from raydesk.embedded_store import free_port
from raydesk.runtime import Runtime
from raydesk.tracing import TRACES_FILE
from tests.integration.client import Api, Client

pytestmark = pytest.mark.integration

# Short enough that the tests of these limits take seconds, long enough that a busy
# machine does not trip them elsewhere.
TEST_LIMITS = {"messages_per_s": 100.0, "burst": 100, "rate_limit_strikes": 10}
BOT_INBOX = "bot"
TEST_WEBSOCKET = {"hello_timeout_s": 2.0, "heartbeat_s": 1, "heartbeat_timeout_s": 4.0}


@pytest.fixture(scope="session")
def runtime(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runtime]:
    data = tmp_path_factory.mktemp("raydesk-data")
    os.environ.pop("RAYDESK_ADMIN_TOKEN", None)
    # Two gateway replicas on one port: participants' connections land on either, so
    # delivery across replicas is exercised by every multi-connection test.
    config = load_config(None, data_dir=str(data),
                         server={"port": free_port(), "gateway_replicas": 2},
                         cluster={"shards": 2, "namespace": f"t{uuid.uuid4().hex[:8]}"},
                         limits=TEST_LIMITS, websocket=TEST_WEBSOCKET,
                         routing={"presence_lease_s": 2.0, "offline_grace_s": 4.0,
                                  "vip_attribute": "vip",
                                  "partitions": {"p2": ["inbox-p2"]}},
                         # The bot takes only the "bot" inbox, so other tests' conversations
                         # queue for agents at once as before.
                         bot={"inboxes": [BOT_INBOX]},
                         # Every frame traced, into one file: test_tracing reads it, and
                         # every other test runs the traced paths (~0.4 ms of CPU per
                         # message, docs/explanation/tracing.md).
                         tracing={"exporter": "file", "path": str(data / TRACES_FILE)})
    rt = Runtime(config)
    rt.start()
    yield rt
    rt.stop()


@pytest.fixture(scope="session")
def data_dir(runtime: Runtime) -> Path:
    return runtime.config.data_path


@pytest.fixture
def ws_url(runtime: Runtime) -> str:
    return runtime.url.replace("http", "ws", 1) + "/v1/ws"


@pytest.fixture
async def api(runtime: Runtime) -> AsyncIterator[Api]:
    assert runtime.secrets is not None
    client = Api(runtime.url, runtime.secrets.admin_token)
    yield client
    await client.close()


@pytest.fixture
async def connect(ws_url: str) -> AsyncIterator[object]:
    """``await connect(token)`` opens a client; all are closed at the end of the test."""
    opened: list[Client] = []

    async def _connect(token: str, ping_every: float | None = 1.0) -> Client:
        client = await Client(ws_url, token, ping_every).connect()
        opened.append(client)
        return client

    yield _connect
    for client in opened:
        await client.close()


@pytest.fixture
def skill() -> str:
    """A skill no other test uses, so queued conversations of one test never reach the
    agents of another."""
    return f"s{uuid.uuid4().hex[:10]}"


# --- browsers (the console and widget tests) -----------------------------------------------

CHROMIUM = os.environ.get("RAYDESK_CHROMIUM", "/usr/bin/chromium")
# As root in a container, with no network beyond loopback: no sandbox, no background
# connections (each one would be refused), no first-run pages.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--disable-dev-shm-usage"]
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Browser]:
    """Debian's chromium, headless, driven by Playwright; one for the whole session."""
    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                                     args=CHROMIUM_ARGS)
        yield chromium
        await chromium.close()


@pytest.fixture
async def new_page(browser: Browser, runtime: Runtime) -> AsyncIterator[object]:
    """``await new_page()`` opens a page in a fresh browser context (its own localStorage,
    like another browser); ``await new_page(context=ctx)`` another tab of the same one.
    Console errors and failed requests of every page are collected in ``page.problems``
    and the test fails on an uncaught page error."""
    contexts: list[BrowserContext] = []
    errors: list[str] = []

    async def _new_page(context: BrowserContext | None = None,
                        viewport: dict[str, int] | None = None) -> Page:
        if context is None:
            context = await browser.new_context(
                base_url=runtime.url, viewport=viewport or {"width": 1280, "height": 800})  # type: ignore[arg-type]
            contexts.append(context)
        page = await context.new_page()
        page.on("pageerror", lambda exc: errors.append(f"{page.url}: {exc}"))
        page.on("dialog", lambda dialog: _refuse(dialog, errors))
        return page

    yield _new_page
    for context in contexts:
        await context.close()
    assert not errors, f"the page raised errors or opened dialogs: {errors}"


def _refuse(dialog: Dialog, errors: list[str]) -> None:
    """A page that opens alert() or confirm() ran something it should not have (or asks
    what a user would find rude): noted, and dismissed so the page goes on."""
    errors.append(f"dialog: {dialog.message}")
    asyncio.get_running_loop().create_task(dialog.dismiss())


def artifact(name: str) -> Path:
    """Where a test saves a screenshot (tests/artifacts/, kept by CI, not committed)."""
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS / name
