"""A server started for a measurement, in its own process group: ``raydesk serve`` with a
config made for the run (the same code path an operator runs, through
:class:`raydesk.runtime.Runtime`), or the bare uvicorn echo.

Its own process, not the load generator's: the server's CPU and memory are then its whole
process tree and nothing of the generator's, and the generator never shares an event loop
or a GIL with the server it measures.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import psutil

from raydesk.config import Config, load_config
from raydesk.embedded_store import free_port
from raydesk.runtime import wait_healthy

# Long enough for Ray, Serve and the bot's model to start on a busy 2-core machine.
START_TIMEOUT_S = 300.0


def load_config_for(base: str | None, *, port: int, data_dir: str, admin_token: str,
                    bot: bool, agent_rate: float,
                    overrides: dict[str, dict[str, Any]] | None = None) -> Config:
    """The operator's config (``base``, or the defaults) made fit for a load test on this
    machine: a fresh data folder and port, a known admin token, quiet logs, the bot on or
    off, and a per-connection frame rate the simulated agents' replies fit in.

    A simulated agent answers ``agent_rate`` messages a second on one connection, where a
    person stays well under the default 5 a second: the limit is raised to three times
    that (customers send far below it either way). ``overrides`` (section -> keys) win
    over all of that."""
    config = load_config(base) if base else load_config(None)
    raw: dict[str, Any] = config.model_dump(mode="json")
    limits = raw["limits"]
    needed = 3 * agent_rate + 2
    if needed > limits["messages_per_s"]:
        limits["messages_per_s"] = round(needed, 1)
        limits["burst"] = max(limits["burst"], int(needed * 4))
    raw["data_dir"] = data_dir
    raw["log_level"] = "WARNING"
    raw["server"] = {**raw["server"], "port": port, "host": "127.0.0.1"}
    raw["auth"] = {**raw["auth"], "admin_token": admin_token}
    raw["cluster"] = {**raw["cluster"], "ray_address": None,
                      "namespace": f"loadtest{os.getpid()}"}
    raw["bot"] = {**raw["bot"], "enabled": bot}
    for section, values in (overrides or {}).items():
        raw[section] = {**raw[section], **values}
    return Config.model_validate(raw)


class ServerProcess:
    """``raydesk serve`` (``config`` given) or the echo server (``config`` None) on a free
    loopback port; :meth:`stop` ends its whole process tree."""

    def __init__(self, config: Config | None = None, env: dict[str, str] | None = None,
                 port: int | None = None) -> None:
        self.config = config
        self.port = config.server.port if config is not None else (port or free_port())
        self.env = env or {}
        self.url = f"http://127.0.0.1:{self.port}"
        self.admin_token = config.auth.admin_token if config is not None else None
        self._tmp = tempfile.TemporaryDirectory(prefix="raydesk-loadtest-")
        self.workdir = Path(self._tmp.name)
        self.process: subprocess.Popen[bytes] | None = None

    @classmethod
    def raydesk(cls, base: str | None = None, bot: bool = False, agent_rate: float = 0.0,
                overrides: dict[str, dict[str, Any]] | None = None,
                env: dict[str, str] | None = None) -> ServerProcess:
        server = cls(env=env)
        server.config = load_config_for(
            base, port=free_port(), data_dir=str(server.workdir / "data"),
            admin_token=secrets.token_urlsafe(32), bot=bot, agent_rate=agent_rate,
            overrides=overrides)
        server.port = server.config.server.port
        server.url = f"http://127.0.0.1:{server.port}"
        server.admin_token = server.config.auth.admin_token
        return server

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    @property
    def log_path(self) -> Path:
        return self.workdir / "server.log"

    def start(self, timeout: float = START_TIMEOUT_S) -> ServerProcess:
        env = {**os.environ, **self.env}
        env.pop("RAY_ADDRESS", None)
        if self.config is None:
            cmd = [sys.executable, "-m", "raydesk.loadtest.echo", str(self.port)]
        else:
            # JSON is YAML: the config file raydesk serve reads.
            path = self.workdir / "config.yaml"
            path.write_text(json.dumps(self.config.model_dump(mode="json")))
            path.chmod(0o600)
            env.pop("RAYDESK_ADMIN_TOKEN", None)
            cmd = [sys.executable, "-m", "raydesk.cli", "serve", "--config", str(path)]
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(cmd, env=env, stdout=log,
                                            stderr=subprocess.STDOUT,
                                            start_new_session=True)
        try:
            wait_healthy(self.url, timeout)
        except RuntimeError:
            tail = self.log_tail()
            self.stop()
            raise RuntimeError(f"the server did not start; its log ends with:\n{tail}") from None
        except BaseException:  # Ctrl-C while starting: nothing of it may outlive us
            self.stop()
            raise
        return self

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def stop(self) -> None:
        """SIGTERM to the group (raydesk stops cleanly: gateways, actors, store, Ray), then
        kill whatever of the tree is left (some of Ray's helpers leave the group)."""
        if self.process is not None:
            family: list[psutil.Process] = []
            with contextlib.suppress(psutil.NoSuchProcess):
                top = psutil.Process(self.process.pid)
                family = [top, *top.children(recursive=True)]
            try:
                os.killpg(self.process.pid, signal.SIGTERM)
                self.process.wait(60)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                pass
            _, alive = psutil.wait_procs(family, timeout=10)
            for process in alive:
                with contextlib.suppress(psutil.Error):
                    process.kill()
            self.process = None
        self._tmp.cleanup()

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()
