"""The ``raydesk`` command: ``raydesk serve`` and ``raydesk agent add``."""

from __future__ import annotations

import argparse
import getpass
import json
import logging
import os
import signal
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from raydesk.auth import SECRETS_FILE
from raydesk.config import Config, load_config
from raydesk.errors import ConfigError

log = logging.getLogger("raydesk.cli")


def _config(args: argparse.Namespace) -> Config:
    overrides: dict[str, Any] = {}
    if getattr(args, "data_dir", None):
        overrides["data_dir"] = args.data_dir
    server: dict[str, Any] = {}
    if getattr(args, "port", None) is not None:
        server["port"] = args.port
    if getattr(args, "host", None):
        server["host"] = args.host
    if server:
        overrides["server"] = server
    config_path = args.config
    if config_path is None and Path("config.yaml").exists():
        config_path = "config.yaml"
    return load_config(config_path, **overrides)


def serve(args: argparse.Namespace) -> int:
    config = _config(args)
    logging.basicConfig(level=config.log_level,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from raydesk.runtime import Runtime

    stop = threading.Event()

    def on_signal(*_: object) -> None:
        stop.set()

    def handle_signals() -> None:
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, on_signal)

    handle_signals()
    runtime = Runtime(config)
    print(f"raydesk: starting (data in {config.data_path}) ...", flush=True)
    try:
        # Ray's core worker installs a SIGTERM handler that aborts: put ours back.
        runtime.start(on_ray_started=handle_signals)
        if stop.is_set():
            return 0
        assert runtime.secrets is not None
        ws_url = runtime.url.replace("http", "ws", 1) + "/v1/ws"
        print(f"raydesk is up: {runtime.url}\n"
              f"  WebSocket   {ws_url}\n"
              f"  REST API    {runtime.url}/v1  (OpenAPI: {runtime.url}/docs)\n"
              f"  health      {runtime.url}/healthz", flush=True)
        if runtime.secrets.admin_token_generated:
            print(f"  admin token in {config.data_path / SECRETS_FILE} (key admin_token); "
                  "set RAYDESK_ADMIN_TOKEN or auth.admin_token to choose your own",
                  flush=True)
        print("Ctrl-C stops it.", flush=True)
        stop.wait()
        print("raydesk: stopping ...", flush=True)
    finally:
        runtime.stop()
    print("raydesk: stopped.", flush=True)
    return 0


def _admin_token(config: Config) -> str:
    token = os.environ.get("RAYDESK_ADMIN_TOKEN") or config.auth.admin_token
    if token:
        return token
    path = config.data_path / SECRETS_FILE
    try:
        return str(json.loads(path.read_text())["admin_token"])
    except (OSError, ValueError, KeyError):
        raise ConfigError(f"no admin token: set RAYDESK_ADMIN_TOKEN, or run raydesk serve "
                          f"once so that {path} exists") from None


def agent_add(args: argparse.Namespace) -> int:
    config = _config(args)
    password = os.environ.get("RAYDESK_AGENT_PASSWORD") or getpass.getpass("password: ")
    body = {"email": args.email, "name": args.name, "password": password,
            "skills": [s for s in (args.skills or "").split(",") if s],
            "role": args.role}
    if args.max_chats is not None:
        body["max_chats"] = args.max_chats
    url = args.url or f"http://{config.server.host}:{config.server.port}"
    request = urllib.request.Request(
        f"{url}/v1/agents", data=json.dumps(body).encode(), method="POST",
        headers={"Content-Type": "application/json",
                 "Authorization": f"Bearer {_admin_token(config)}"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            print(json.loads(response.read())["agent_id"])
            return 0
    except urllib.error.HTTPError as exc:
        error = json.loads(exc.read() or b"{}").get("error", {})
        print(f"raydesk: {error.get('code', exc.code)}: {error.get('message', exc.reason)}",
              file=sys.stderr)
        return 1
    except urllib.error.URLError as exc:
        print(f"raydesk: cannot reach {url}: {exc.reason}", file=sys.stderr)
        return 1


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="raydesk", description=__doc__)
    commands = top.add_subparsers(dest="command", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--config", help="YAML config file (default: ./config.yaml if present)")
        p.add_argument("--data-dir", help="data folder (store, secrets)")
        p.add_argument("--port", type=int, help="public port")

    run = commands.add_parser("serve", help="start raydesk and wait for Ctrl-C")
    common(run)
    run.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    run.set_defaults(func=serve)

    agent = commands.add_parser("agent", help="manage agents").add_subparsers(
        dest="agent_command", required=True)
    add = agent.add_parser("add", help="create an agent (password from "
                           "RAYDESK_AGENT_PASSWORD or a prompt)")
    common(add)
    add.add_argument("--email", required=True)
    add.add_argument("--name", required=True)
    add.add_argument("--skills", help="comma-separated skills, e.g. billing,tech")
    add.add_argument("--max-chats", type=int)
    add.add_argument("--role", choices=["agent", "admin"], default="agent")
    add.add_argument("--url", help="raydesk's URL (default from the config)")
    add.set_defaults(func=agent_add)
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return int(args.func(args))
    except ConfigError as exc:
        print(f"raydesk: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
