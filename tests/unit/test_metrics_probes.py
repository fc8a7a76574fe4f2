"""/readyz's checks and verdict (raydesk/probes.py), with fake checks: no Ray."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from raydesk.errors import Unavailable
from raydesk.probes import NotReady, all_answer, run_checks, verdict


async def _ok() -> None:
    return None


async def _down() -> None:
    raise NotReady("unreachable")


async def _hangs() -> None:
    await asyncio.sleep(60)


async def _crashes() -> None:
    raise RuntimeError("secret internal detail")


async def _unavailable() -> None:
    raise Unavailable("the router is restarting, try again")


async def test_every_check_passing_is_200_with_each_named() -> None:
    checks = await run_checks({"store": _ok, "shards": _ok, "routers": _ok, "bot": _ok})
    status, body = verdict(checks)
    assert status == 200
    assert body == {"status": "ready", "checks": {"store": "ok", "shards": "ok",
                                                  "routers": "ok", "bot": "ok"}}


async def test_failing_checks_are_503_and_named_without_internal_detail() -> None:
    """A failure, a hang and a crash are each named; the crash's message is not shown;
    all within about one check's limit (they run together)."""
    started = time.monotonic()
    checks = await run_checks({"store": _down, "shards": _hangs, "routers": _crashes,
                               "bot": _ok, "other": _unavailable}, limit_s=0.2)
    assert time.monotonic() - started < 1.0
    status, body = verdict(checks)
    assert status == 503
    assert body["status"] == "not_ready"
    assert body["failing"] == ["store", "shards", "routers", "other"]
    assert body["checks"]["store"] == "unreachable"
    assert body["checks"]["shards"] == "no answer within 0.2 s"
    assert body["checks"]["routers"] == "failed"
    assert body["checks"]["bot"] == "ok"
    assert "secret" not in str(body)


async def test_all_answer_names_the_actors_that_did_not() -> None:
    async def fine() -> str:
        return "s0"

    def raises_at_once() -> Any:  # e.g. ray.get_actor of an actor that does not exist
        raise ValueError("no such actor")

    try:
        await all_answer({"s0": fine, "s1": _crashes, "s2": raises_at_once, "s3": _hangs})
    except NotReady as exc:
        assert str(exc) == "s1: failed; s2: failed; s3: no answer"
    else:
        raise AssertionError("s1 failed but all_answer passed")
