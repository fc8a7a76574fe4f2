"""``raydesk loadtest``: its options, and running a scenario against a raydesk (and, for the
baseline, the echo server) from start to the written results.

Importing this module costs only argparse: ``raydesk``'s parser adds these options on
every invocation; the load test's own imports happen when it runs.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from raydesk.loadtest.report import Display
    from raydesk.loadtest.scenarios import Options, Scenario

SCENARIOS = ("custom", "quick", "idle", "steady", "saturation", "seed", "baseline")


def _rates(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected rates like 250,500,1000") from None


def _mix(text: str) -> Any:
    from raydesk.loadtest.texts import Mix

    try:
        return Mix.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``raydesk loadtest`` (and of ``benchmarks/loadtest.py``)."""
    where = parser.add_argument_group("where")
    where.add_argument("--url", metavar="URL",
                       help="the raydesk to load (default: from the config; "
                       "loopback only unless --allow-remote)")
    where.add_argument("--start", action="store_true",
                       help="start a raydesk of its own for the run (temporary data folder, "
                       "free port, --config as its base) and stop it after")
    where.add_argument("--allow-remote", action="store_true",
                       help="allow a --url that is not on this machine")
    where.add_argument("--admin-token", metavar="TOKEN", help="to create the agents (default: "
                       "RAYDESK_ADMIN_TOKEN, auth.admin_token, or <data_dir>/secrets.json)")
    where.add_argument("--server-pid", type=int, metavar="PID",
                       help="the process whose tree is the server, for its CPU and memory "
                       "(default: found from the port)")
    what = parser.add_argument_group("what")
    what.add_argument("--scenario", choices=SCENARIOS, default=None,
                      help="a named test (default: custom); options below override it")
    what.add_argument("--quick", action="store_true", help="the same as --scenario quick")
    what.add_argument("--customers", type=int, metavar="N",
                      help="simulated customers (connections)")
    what.add_argument("--agents", type=int, metavar="N", help="simulated agents (connections)")
    what.add_argument("--rate", type=float, metavar="R",
                      help="customer messages per second offered, "
                      "open loop; agents' replies come on top")
    what.add_argument("--duration", type=float, dest="duration_s", metavar="S",
                      help="seconds of each measured step")
    what.add_argument("--messages", type=int, metavar="N",
                      help="stop a step after this many customer messages")
    what.add_argument("--ramp", type=_rates, metavar="R1,R2,...",
                      help="several steps at these rates, stopping "
                      "at the first that does not hold (e.g. 250,500,1000)")
    what.add_argument("--p99-ms", type=float, metavar="MS",
                      help="a ramp step holds while ack p99 is "
                      "at most this (default 200)")
    what.add_argument("--mix", type=_mix, metavar="SHARES", help="shares of customer messages: "
                      "faq=0.6,offtopic=0.2,human=0.2 (the default)")
    what.add_argument("--faq", metavar="FILE",
                      help="an FAQ file (CSV or YAML, as for 'raydesk faq import') "
                      "whose questions customers ask")
    what.add_argument("--agent-delay", type=float, dest="agent_delay_s", metavar="S",
                      help="seconds an agent takes to answer (0.5x-1.5x; default 1)")
    what.add_argument("--max-chats", type=int, metavar="N",
                      help="chats per agent (default: enough for "
                      "every customer)")
    what.add_argument("--bot", action=argparse.BooleanOptionalAction, default=None,
                      help="with --start: run the bot (default: per scenario)")
    what.add_argument("--inbox", metavar="NAME",
                      help="the visitors' inbox (which bot and routing apply)")
    what.add_argument("--partition", metavar="NAME", help="the agents' routing partition")
    what.add_argument("--open", action=argparse.BooleanOptionalAction, default=None,
                      dest="open_conversations", help="open every conversation before "
                      "measuring (default: yes, except idle)")
    what.add_argument("--open-rate", type=float, metavar="R",
                      help="conversations opened per second "
                      "before measuring (default 200)")
    how = parser.add_argument_group("how")
    how.add_argument("--workers", type=int, metavar="K",
                     help="load-generating processes (default 1)")
    how.add_argument("--drain", type=float, dest="drain_s", metavar="S",
                     help="at most this many seconds to wait for late acks and deliveries")
    how.add_argument("--window", type=float, dest="window_s", metavar="S",
                     help="seconds per point of the time series (default 1)")
    how.add_argument("--late-ms", type=float, metavar="MS",
                     help="a message sent this much after its planned time is late (50)")
    how.add_argument("--out", default="loadtest-results", metavar="DIR",
                     help="folder for the JSON and PNG (default ./loadtest-results)")
    how.add_argument("--no-progress", action="store_true", help="no progress bar")


def options(args: argparse.Namespace) -> Options:
    from raydesk.loadtest.scenarios import Options

    names = {f.name for f in dataclasses.fields(Options)} - {"extra"}
    given: dict[str, Any] = {name: getattr(args, name, None) for name in names}
    return Options(**given)


def questions_of(path: str | None) -> tuple[str, ...]:
    if not path:
        return ()
    from raydesk.faq_file import read_faq
    from raydesk.loadtest.texts import faq_questions

    return faq_questions(read_faq(path).items)


def execute(scenario: Scenario, *, start: bool, url: str | None = None,
            admin_token: Callable[[], str | None] = lambda: None,
            base_config: str | None = None, server_pid: int | None = None,
            questions: tuple[str, ...] = (), display: Display | None = None,
            ) -> dict[str, Any]:
    """Run a scenario: against ``url``, or a raydesk started for it (``start``); the
    baseline also starts the echo server. The result, with targets and machine."""
    from raydesk.loadtest.procs import machine
    from raydesk.loadtest.run import Target, run
    from raydesk.loadtest.server import ServerProcess

    plan = scenario.plan

    def against_raydesk() -> dict[str, Any]:
        if not start:
            assert url is not None
            token = admin_token() if plan.agents else None
            return run(plan, Target(url, token, server_pid, questions=questions), display)
        with ServerProcess.raydesk(base_config, bot=scenario.bot,
                                   agent_rate=plan.agent_rate) as server:
            assert server.config is not None
            result = run(plan, Target(server.url, server.admin_token, server.pid,
                                      install_faq=scenario.bot, questions=questions), display)
            result["server"] = {"started": True, "bot": scenario.bot,
                                "limits": server.config.limits.model_dump(),
                                "gateway_replicas": server.config.server.gateway_replicas}
            return result

    if scenario.name == "baseline":
        echo_plan = dataclasses.replace(plan, name="baseline-echo", echo=True, agents=0,
                                        open_conversations=False)
        with ServerProcess() as echo:
            echo_run = run(echo_plan, Target(echo.url, server_root=echo.pid), display)
        ours = against_raydesk()
        ours["scenario"] = "baseline-raydesk"
        result: dict[str, Any] = {"scenario": "baseline", "runs": [echo_run, ours]}
    else:
        result = against_raydesk()
    if scenario.targets is not None:
        result["targets"] = scenario.targets(result)
    result["machine"] = machine()
    return result


def run_command(args: argparse.Namespace, default_url: str,
                admin_token: Callable[[], str | None]) -> int:
    """``raydesk loadtest``: run, print the summary, write the results; 0 when every
    acknowledged message was delivered exactly once and in order."""
    from raydesk.loadtest.accounts import LoadTestError
    from raydesk.loadtest.plan import PlanError, check_target
    from raydesk.loadtest.report import Display, print_summary, write
    from raydesk.loadtest.scenarios import build

    name = "quick" if args.quick else (args.scenario or "custom")
    try:
        scenario = build(name, options(args))
        url = None if args.start else (args.url or default_url)
        if url is not None:
            check_target(url, args.allow_remote)
        with Display(enabled=not args.no_progress and sys.stderr.isatty()) as display:
            result = execute(scenario, start=args.start, url=url, admin_token=admin_token,
                             base_config=args.config if args.start else None,
                             server_pid=args.server_pid, questions=questions_of(args.faq),
                             display=display)
    except (PlanError, LoadTestError, RuntimeError, ValueError) as exc:
        print(f"raydesk loadtest: {exc}", file=sys.stderr)
        return 2
    print_summary(result)
    stem = f"loadtest_{name}_{time.strftime('%Y%m%d-%H%M%S')}"
    json_path, png_path = write(result, Path(args.out), stem)
    print(f"results: {json_path}" + (f" and {png_path}" if png_path else
                                     " (no plot: pip install 'raydesk[bench]')"))
    checks = [part.get("check", {}) for part in result.get("runs", [result])]
    return 0 if all(c.get("exactly_once", True) for c in checks) else 1


def main() -> None:
    """``python -m raydesk.loadtest`` without the rest of the ``raydesk`` command."""
    parser = argparse.ArgumentParser(prog="python -m raydesk.loadtest",
                                     description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--config", help="base config for --start")
    add_arguments(parser)
    args = parser.parse_args()
    token = args.admin_token or os.environ.get("RAYDESK_ADMIN_TOKEN")
    sys.exit(run_command(args, "http://127.0.0.1:8080", lambda: token))
