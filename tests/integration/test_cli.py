"""The README's run command: `raydesk serve` starts, serves, stops cleanly on SIGTERM or
Ctrl-C, and starts again on the same data folder with everything there."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import psutil
import pytest
import websockets

from raydesk.embedded_store import free_port
from raydesk.runtime import Runtime
from tests.integration.client import SCALE

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def start(data: Path, port: int) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS",
                                                             "RAYDESK_ADMIN_TOKEN")}
    return subprocess.Popen(
        [sys.executable, "-m", "raydesk.cli", "serve", "--data-dir", str(data), "--port",
         str(port)], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, start_new_session=True)


def wait_up(server: subprocess.Popen[str], lines: list[str]) -> None:
    """Read the server's output until it says it is up (what a user waits for)."""
    assert server.stdout is not None
    ready = threading.Event()

    def read() -> None:
        assert server.stdout is not None
        for line in server.stdout:
            lines.append(line)
            if line.startswith("raydesk is up"):
                ready.set()
        ready.set()

    threading.Thread(target=read, daemon=True).start()
    assert ready.wait(180 * SCALE) and server.poll() is None, "".join(lines)


def stop(server: subprocess.Popen[str], signum: int, lines: list[str]) -> str:
    family = [server.pid, *[p.pid for p in psutil.Process(server.pid).children(recursive=True)]]
    server.send_signal(signum)
    server.wait(timeout=120 * SCALE)
    time.sleep(0.2)  # the reader thread takes the last lines
    output = "".join(lines)
    assert server.returncode == 0, output
    _, alive = psutil.wait_procs([psutil.Process(p) for p in family if psutil.pid_exists(p)],
                                    timeout=30 * SCALE)
    assert not alive, f"left running: {[p.cmdline() for p in alive]}"
    return output


async def chat(base: str, token: str | None) -> tuple[str, dict[str, object]]:
    async with httpx.AsyncClient(base_url=base) as http:
        if token is None:
            token = (await http.post("/v1/visitors", json={})).json()["token"]
    async with websockets.connect(base.replace("http", "ws", 1) + "/v1/ws") as ws:
        await ws.send(json.dumps({"type": "hello", "token": token}))
        json.loads(await ws.recv())
        await ws.send(json.dumps({"type": "send", "client_msg_id": "cli-1", "text": "hi"}))
        while True:
            frame = json.loads(await ws.recv())
            if frame["type"] == "ack":
                return token, frame


def test_serve_stops_cleanly_and_restarts(tmp_path: Path) -> None:
    """SIGTERM and then SIGINT each stop every process raydesk started (exit 0); on the same
    data folder the second start keeps the visitor's token, history and dedupe."""
    data, port = tmp_path / "data", free_port()
    base = f"http://127.0.0.1:{port}"
    server, lines = start(data, port), []
    try:
        wait_up(server, lines)
        token, first = asyncio.run(chat(base, None))
    finally:
        output = stop(server, signal.SIGTERM, lines)
    assert f"raydesk is up: {base}" in output and "raydesk: stopped." in output
    secrets = data / "secrets.json"
    assert secrets.stat().st_mode & 0o777 == 0o600
    assert (data / "store").is_dir()

    server, lines = start(data, port), []
    try:
        wait_up(server, lines)
        _, again = asyncio.run(chat(base, token))
    finally:
        stop(server, signal.SIGINT, lines)
    assert again == first


def test_bad_config_stops_the_start(tmp_path: Path) -> None:
    """A wrong key or value in the config file stops `raydesk serve` (exit 2) with a message
    naming the key, before anything starts."""
    config = tmp_path / "config.yaml"
    config.write_text("server:\n  port: 80800\n  colour: blue\n")
    result = subprocess.run([sys.executable, "-m", "raydesk.cli", "serve", "--config",
                             str(config), "--data-dir", str(tmp_path / "d")], cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "server.port" in result.stderr and "server.colour: unknown key" in result.stderr
    assert not (tmp_path / "d").exists()


def test_agent_add(runtime: Runtime) -> None:
    """`raydesk agent add` creates an agent who can log in; a second add with the same email
    fails with exit 1 and says conflict; a wrong admin token says unauthorized."""
    assert runtime.secrets is not None
    email = f"cli-{os.getpid()}@example.test"
    env = {**os.environ, "RAYDESK_ADMIN_TOKEN": runtime.secrets.admin_token,
           "RAYDESK_AGENT_PASSWORD": "from the command line"}
    command = [sys.executable, "-m", "raydesk.cli", "agent", "add", "--url", runtime.url,
               "--email", email, "--name", "Cli", "--skills", "billing,tech",
               "--max-chats", "3"]
    created = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    assert created.returncode == 0, created.stderr
    agent_id = created.stdout.strip()
    assert agent_id.startswith("a_")
    login = httpx.post(f"{runtime.url}/v1/agents/login",
                       json={"email": email, "password": "from the command line"})
    assert login.status_code == 200 and login.json()["agent_id"] == agent_id
    again = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    assert again.returncode == 1 and "conflict" in again.stderr
    wrong = subprocess.run([*command[:-6], "--email", "other@example.test", "--name", "X"],
                           env={**env, "RAYDESK_ADMIN_TOKEN": "x" * 30},
                           capture_output=True, text=True, timeout=60)
    assert wrong.returncode == 1 and "unauthorized" in wrong.stderr
