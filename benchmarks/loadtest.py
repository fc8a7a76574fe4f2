"""The load-test scenarios of issue 6, each against a raydesk started for it on this
machine, saved as benchmarks/results/loadtest_<scenario>.json and .png with the machine
described (cores, memory, CPU model, Python, Ray).

Each scenario is bounded (connections, seconds, messages); quote the figures as one run on
a shared 2-core machine. docs/how-to/load-test.md explains every figure.

Run: .venv/bin/python benchmarks/loadtest.py [--scenarios idle,steady,saturation,seed,baseline]
     [any `raydesk loadtest` option, applied to every scenario]
"""

from __future__ import annotations

import argparse
import json
import sys

from report import save

from raydesk.loadtest import report as loadtest_report
from raydesk.loadtest.cli import add_arguments, execute, options, questions_of
from raydesk.loadtest.procs import machine
from raydesk.loadtest.scenarios import build

FULL = ("idle", "steady", "saturation", "seed", "baseline")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenarios", default=",".join(FULL),
                        help=f"comma-separated, from {', '.join(FULL)} and quick")
    parser.add_argument("--config", help="base config for the started raydesk")
    add_arguments(parser)
    args = parser.parse_args()
    failed = False
    for name in args.scenarios.split(","):
        scenario = build(name, options(args))
        print(f"== {name}: {scenario.plan.customers:,} customers, {scenario.plan.agents:,} "
              f"agents, steps {[s.rate for s in scenario.plan.steps]}", flush=True)
        with loadtest_report.Display(enabled=sys.stderr.isatty()) as display:
            result = execute(scenario, start=True, base_config=args.config,
                             questions=questions_of(args.faq), display=display)
        loadtest_report.print_summary(result)
        save(f"loadtest_{name}", {"scenario": name, "machine_detail": machine()}, result,
             loadtest_report.plot)
        checks = [part.get("check", {}) for part in result.get("runs", [result])]
        failed |= not all(c.get("exactly_once", True) for c in checks)
        print(json.dumps(result.get("targets", []), indent=1), flush=True)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
