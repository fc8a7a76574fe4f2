"""Load-test plans: bounds, loopback only, scenarios and options (raydesk/loadtest)."""

from __future__ import annotations

import pytest

from raydesk.loadtest.plan import MAX_CONNECTIONS, Plan, PlanError, Step, StopRule, check_target
from raydesk.loadtest.scenarios import PRESETS, Options, build
from raydesk.loadtest.sim import stamp_of
from raydesk.loadtest.texts import Mix, Phrasebook


def test_every_scenario_is_within_bounds() -> None:
    """Each named scenario builds and validates as it is."""
    for name in PRESETS:
        assert build(name, Options()).plan.steps


@pytest.mark.parametrize("change", [
    {"customers": MAX_CONNECTIONS + 1}, {"workers": 0},
    {"steps": (Step(rate=-1, duration_s=10),)}, {"steps": (Step(10, 10_000),)},
    {"steps": ()}, {"max_chats": 5000}])
def test_a_plan_out_of_bounds_is_refused(change: dict[str, object]) -> None:
    """Every run is bounded in connections, time, rate and count."""
    plan = Plan("t", customers=10, agents=1, steps=(Step(1, 1),))
    with pytest.raises(PlanError):
        Plan(**{**plan.__dict__, **change}).validate()


def test_options_override_the_scenario() -> None:
    """Command-line values win; a ramp makes one step per rate and stops on p99."""
    scenario = build("steady", Options(customers=200, rate=50, duration_s=5, bot=True))
    assert scenario.plan.customers == 200 and scenario.bot
    assert scenario.plan.steps == (Step(50, 5),)
    ramp = build("custom", Options(ramp=(10, 20, 40), duration_s=3)).plan
    assert [s.rate for s in ramp.steps] == [10, 20, 40]
    assert ramp.stop == StopRule()


def test_agents_get_room_for_every_customer() -> None:
    plan = Plan("t", customers=10_000, agents=100, steps=(Step(1, 1),))
    assert plan.chats_per_agent >= 100


@pytest.mark.parametrize("url", ["http://127.0.0.1:8080", "http://localhost:9000",
                                 "http://[::1]:8080"])
def test_loopback_targets_are_allowed(url: str) -> None:
    check_target(url, allow_remote=False)


def test_a_remote_target_needs_allow_remote() -> None:
    """A load test aimed at another machine is refused unless asked for."""
    with pytest.raises(PlanError, match="allow-remote"):
        check_target("http://10.20.30.40:8080", allow_remote=False)
    check_target("http://10.20.30.40:8080", allow_remote=True)
    with pytest.raises(PlanError):
        check_target("ftp://127.0.0.1", allow_remote=True)


def test_a_stop_rule_holds_only_a_clean_fast_step() -> None:
    step = {"latency": {"ack": {"p99_ms": 150.0}}, "errors": {}, "unacked": 0,
            "late_share": 0.0}
    rule = StopRule(p99_ms=200)
    assert rule.holds(step)
    assert not rule.holds({**step, "latency": {"ack": {"p99_ms": 250.0}}})
    assert not rule.holds({**step, "errors": {"rate_limited": 1}})
    assert not rule.holds({**step, "late_share": 0.2})


def test_mix_parsing_and_picking() -> None:
    """Shares by kind; only the kinds with a share are said."""
    mix = Mix.parse("faq=1,human=0")
    assert mix == Mix(faq=1, offtopic=0, human=0)
    book = Phrasebook(mix, ["Where is my parcel?"], seed=1)
    assert {book.pick() for _ in range(20)} == {("faq", "Where is my parcel?")}
    for wrong in ("faq", "weather=1", "faq=-1", "faq=0"):
        with pytest.raises(ValueError):
            Mix.parse(wrong)


def test_client_msg_ids_carry_their_send_time() -> None:
    assert stamp_of("lt0.12.1700000000123456") == pytest.approx(1700000000.123456)
    assert stamp_of("web-5b0c9a1e") is None
