"""raydesk.routing: the agent choice policy and the wait queue (property tests)."""

from __future__ import annotations

import copy
import dataclasses
import json
from collections.abc import Iterable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from raydesk.routing import (
    FRONT_PRIORITY,
    AgentSlot,
    WaitQueue,
    Weights,
    choose_agent,
    ewma,
    explain,
    matches,
    priority_for,
    score,
)

SKILLS = ["billing", "tech", "sales"]
skill_or_none = st.none() | st.sampled_from(SKILLS)


PRESENCES = ["online", "online", "away", "offline"]


def _slots(rows: list[tuple[int, int, str, int, int]]) -> list[AgentSlot]:
    return [AgentSlot(agent_id=f"a{i}", max_chats=max_chats,
                      skills=frozenset(s for bit, s in enumerate(SKILLS) if mask >> bit & 1),
                      presence=presence, load=min(load, max_chats + 1), idle_since=idle)
            for i, (max_chats, mask, presence, load, idle) in enumerate(rows)]


# Up to 10 agents with unique ids; small value ranges so that ties happen often. (Tuples
# rather than a composite strategy: several times faster to generate.)
agent_lists = st.lists(st.tuples(st.integers(1, 6), st.integers(0, 7),
                                 st.sampled_from(PRESENCES), st.integers(0, 7),
                                 st.integers(0, 5)), max_size=10).map(_slots)

# Only online agents with room and the skill: every one competes, so the ordering rules
# (ratio, then idle_since) are exercised on every example.
eligible_lists = st.lists(st.tuples(st.integers(1, 6), st.just(0b001), st.just("online"),
                                    st.integers(0, 5), st.integers(0, 3)),
                          min_size=1, max_size=8).map(
    lambda rows: _slots([(m, mask, p, min(load, m - 1), idle)
                         for m, mask, p, load, idle in rows]))


def _eligible(agents: Iterable[AgentSlot], skill: str | None) -> list[AgentSlot]:
    return [a for a in agents if a.presence == "online" and a.load < a.max_chats
            and (skill is None or skill in a.skills)]


def _slot(agent_id: str, load: int = 0, max_chats: int = 4, idle_since: int = 0,
          skills: Iterable[str] = ("billing",), presence: str = "online") -> AgentSlot:
    return AgentSlot(agent_id=agent_id, max_chats=max_chats, skills=frozenset(skills),
                     presence=presence, load=load, idle_since=idle_since)


# --- choose_agent: properties ----------------------------------------------------------


@given(agents=agent_lists, skill=skill_or_none)
def test_choice_is_always_eligible(agents: list[AgentSlot], skill: str | None) -> None:
    """The chosen agent is online, under max_chats and has the skill; None iff nobody is."""
    chosen = choose_agent(agents, skill)
    if chosen is None:
        assert _eligible(agents, skill) == []
        return
    assert chosen in agents
    assert chosen.presence == "online"
    assert chosen.load < chosen.max_chats
    assert skill is None or skill in chosen.skills


@given(agents=agent_lists, skill=skill_or_none, data=st.data())
def test_choice_is_deterministic_and_order_independent(
        agents: list[AgentSlot], skill: str | None, data: st.DataObject) -> None:
    """The same agents give the same choice, whatever order they are listed in."""
    first = choose_agent(agents, skill)
    assert choose_agent(agents, skill) is first
    shuffled = data.draw(st.permutations(agents))
    again = choose_agent(list(shuffled), skill)
    assert (again.agent_id if again else None) == (first.agent_id if first else None)


@given(agents=agent_lists | eligible_lists, skill=skill_or_none)
def test_least_loaded_ratio_wins_then_longest_idle(agents: list[AgentSlot],
                                                   skill: str | None) -> None:
    """No eligible agent has a lower load ratio, nor an equal ratio and an earlier idle_since."""
    chosen = choose_agent(agents, skill)
    if chosen is None:
        assert _eligible(agents, skill) == []
        return
    ratio = chosen.load / chosen.max_chats
    for other in _eligible(agents, skill):
        other_ratio = other.load / other.max_chats
        assert other_ratio >= ratio
        if other_ratio == ratio:
            assert other.idle_since >= chosen.idle_since


@given(agents=agent_lists, skill=skill_or_none)
def test_choice_does_not_change_the_agents(agents: list[AgentSlot], skill: str | None) -> None:
    """Choosing is pure: the agent slots are not modified."""
    before = [dataclasses.replace(a) for a in agents]
    choose_agent(agents, skill)
    assert agents == before


# --- choose_agent: examples ------------------------------------------------------------


def test_nobody_eligible_gives_none() -> None:
    """Offline, away, full or unskilled agents are never chosen."""
    agents = [_slot("off", presence="offline"), _slot("away", presence="away"),
              _slot("full", load=4), _slot("over", load=5), _slot("tech", skills=["tech"])]
    assert choose_agent(agents, "billing") is None
    assert choose_agent([], None) is None


def test_no_skill_needed_accepts_agents_without_skills() -> None:
    """A conversation without a skill may go to an agent with no skills."""
    chosen = choose_agent([_slot("plain", skills=())], None)
    assert chosen is not None and chosen.agent_id == "plain"


def test_ratio_not_raw_load_decides() -> None:
    """An agent with 2 of 10 chats beats one with 1 of 2."""
    chosen = choose_agent([_slot("small", load=1, max_chats=2),
                           _slot("big", load=2, max_chats=10)], "billing")
    assert chosen is not None and chosen.agent_id == "big"


def test_tie_goes_to_longest_idle_then_id() -> None:
    """At equal ratio the smallest idle_since wins, then the smallest id."""
    agents = [_slot("b", load=1, idle_since=50), _slot("c", load=1, idle_since=10),
              _slot("a", load=1, idle_since=10), _slot("z", load=2, idle_since=0)]
    chosen = choose_agent(agents, "billing")
    assert chosen is not None and chosen.agent_id == "a"


# --- WaitQueue -------------------------------------------------------------------------


@st.composite
def queue_ops(draw: st.DrawFn) -> list[tuple[str, str, str | None, int, int]]:
    """A list of ('push'|'remove', cid, skill, ts, priority)."""
    return draw(st.lists(st.tuples(
        st.sampled_from(["push", "push", "remove"]),
        st.sampled_from([f"c{i}" for i in range(8)]),
        skill_or_none,
        st.integers(min_value=0, max_value=4),
        st.integers(min_value=0, max_value=2),
    ), max_size=25))


@given(ops=queue_ops())
def test_wait_queue_matches_a_reference_model(
        ops: list[tuple[str, str, str | None, int, int]]) -> None:
    """The queue orders by priority, then enqueue time, then push order; dups and removes work."""
    queue = WaitQueue()
    model: dict[str, tuple[int, int, int, str | None]] = {}
    for order, (op, cid, skill, ts, priority) in enumerate(ops):
        if op == "push":
            added = queue.push(cid, skill, ts, priority=priority)
            assert added == (cid not in model)
            if added:
                model[cid] = (priority, ts, order, skill)
        else:
            assert queue.remove(cid) == (cid in model)
            model.pop(cid, None)
        assert len(queue) == len(model)
        assert all((c in queue) == (c in model) for c in (f"c{i}" for i in range(8)))
    expected = sorted(model.items(), key=lambda item: item[1][:3])
    assert queue.ordered() == [(cid, entry[3]) for cid, entry in expected]


@given(ops=queue_ops())
def test_positions_are_one_based_per_skill(
        ops: list[tuple[str, str, str | None, int, int]]) -> None:
    """Each skill's conversations are numbered 1..n in queue order."""
    queue = WaitQueue()
    for op, cid, skill, ts, priority in ops:
        if op == "push":
            queue.push(cid, skill, ts, priority)
        else:
            queue.remove(cid)
    positions = queue.positions()
    ordered = queue.ordered()
    assert set(positions) == {cid for cid, _ in ordered}
    for skill in {s for _, s in ordered}:
        same = [cid for cid, s in ordered if s == skill]
        assert [positions[cid] for cid in same] == list(range(1, len(same) + 1))


def test_fifo_within_priority_and_lower_priority_number_first() -> None:
    """Urgent (priority 0) come first; within a priority, first queued is first."""
    queue = WaitQueue()
    assert queue.push("late-normal", None, 30, priority=1)
    assert queue.push("early-normal", None, 10, priority=1)
    assert queue.push("urgent", None, 40, priority=0)
    assert queue.push("same-time-2nd", None, 10, priority=1)
    assert [cid for cid, _ in queue.ordered()] == [
        "urgent", "early-normal", "same-time-2nd", "late-normal"]


def test_positions_example() -> None:
    """Positions count only conversations of the same skill, from 1."""
    queue = WaitQueue()
    queue.push("b1", "billing", 1)
    queue.push("t1", "tech", 2)
    queue.push("b2", "billing", 3)
    queue.push("n1", None, 4)
    assert queue.positions() == {"b1": 1, "t1": 1, "b2": 2, "n1": 1}
    queue.remove("b1")
    assert queue.positions() == {"t1": 1, "b2": 1, "n1": 1}


def test_duplicate_push_returns_false_and_changes_nothing() -> None:
    """Pushing a queued conversation again is refused and keeps its place and skill."""
    queue = WaitQueue()
    assert queue.push("c1", "billing", 5)
    assert queue.push("c2", "billing", 6)
    assert queue.push("c1", "tech", 1, priority=0) is False
    assert queue.ordered() == [("c1", "billing"), ("c2", "billing")]
    assert len(queue) == 2


def test_remove_and_requeue_goes_to_the_back() -> None:
    """A removed conversation leaves; pushed again later, it queues behind the others."""
    queue = WaitQueue()
    queue.push("c1", None, 1)
    queue.push("c2", None, 2)
    assert queue.remove("c1") is True
    assert queue.remove("c1") is False
    assert "c1" not in queue and len(queue) == 1
    assert queue.push("c1", None, 3)
    assert queue.ordered() == [("c2", None), ("c1", None)]


def test_remove_unknown_is_false() -> None:
    """Removing a conversation that is not queued returns False."""
    assert WaitQueue().remove("nope") is False


@pytest.mark.parametrize("n", [0, 1, 50])
def test_ordered_is_repeatable(n: int) -> None:
    """ordered() can be called repeatedly with the same answer (it compacts, not consumes)."""
    queue = WaitQueue()
    for i in range(n):
        queue.push(f"c{i}", None, i % 7, priority=i % 3)
    first = queue.ordered()
    assert queue.ordered() == first
    assert len(first) == n


# --- score and choose_agent with weights -----------------------------------------------


LOAD_ONLY = Weights(load=1.0, response_time=0.0)
SPEED_ONLY = Weights(load=0.0, response_time=1.0)


def _timed(agent_id: str, load: int = 0, max_chats: int = 4, response_ms: float | None = None,
           idle_since: int = 0) -> AgentSlot:
    return AgentSlot(agent_id=agent_id, max_chats=max_chats, skills=frozenset({"billing"}),
                     presence="online", load=load, idle_since=idle_since,
                     response_ms=response_ms)


def _chosen_id(agents: list[AgentSlot], skill: str | None, weights: Weights) -> str | None:
    chosen = choose_agent(agents, skill, weights)
    return None if chosen is None else chosen.agent_id


def test_score_is_the_documented_formula() -> None:
    """score = w_load * load/max_chats + w_rt * rt/(rt + scale)."""
    weights = Weights(load=2.0, response_time=0.5, response_time_scale_ms=60_000.0)
    agent = _timed("a", load=1, max_chats=4, response_ms=20_000)
    assert score(agent, weights) == pytest.approx(2.0 * 0.25 + 0.5 * 20_000 / 80_000)
    assert score(_timed("idle", response_ms=0), weights) == 0.0


def test_load_only_weights_pick_the_lowest_ratio_whatever_the_speed() -> None:
    """With response_time weight 0, the lower load ratio wins even against a faster agent."""
    fast = _timed("fast", load=2, response_ms=1_000)
    slow = _timed("slow", load=1, response_ms=600_000)
    assert score(fast, LOAD_ONLY) == 0.5
    assert score(slow, LOAD_ONLY) == 0.25
    assert _chosen_id([fast, slow], "billing", LOAD_ONLY) == "slow"


def test_speed_only_weights_pick_the_fastest_whatever_the_load() -> None:
    """With load weight 0, the smaller response_ms wins even against an idle agent."""
    busy_fast = _timed("busy-fast", load=3, response_ms=5_000)
    idle_slow = _timed("idle-slow", load=0, response_ms=50_000)
    assert score(busy_fast, SPEED_ONLY) < score(idle_slow, SPEED_ONLY)
    assert _chosen_id([idle_slow, busy_fast], "billing", SPEED_ONLY) == "busy-fast"


def test_unmeasured_agent_counts_as_the_scale() -> None:
    """An agent without response_ms scores 0.5 on response time, like one measured at the
    scale: a faster measured agent beats it, a slower one loses to it."""
    weights = Weights(load=0.0, response_time=1.0, response_time_scale_ms=60_000.0)
    new = _timed("new", idle_since=5)
    assert score(new, weights) == 0.5
    assert score(_timed("m", response_ms=60_000), weights) == 0.5
    assert _chosen_id([new, _timed("fast", response_ms=59_000, idle_since=9)], None,
                      weights) == "fast"
    assert _chosen_id([new, _timed("slow", response_ms=61_000, idle_since=0)], None,
                      weights) == "new"


def test_weighted_tie_goes_to_longest_idle_then_id() -> None:
    """Agents with equal scores (from different load and speed) go by idle_since, then id."""
    weights = Weights(load=1.0, response_time=1.0, response_time_scale_ms=60_000.0)
    # 1/4 + 0.5 (unmeasured) == 0/4 + 180000/240000 == 0.75
    agents = [_timed("b", load=1, idle_since=10), _timed("c", response_ms=180_000, idle_since=10),
              _timed("a", load=1, idle_since=20), _timed("z", load=2, idle_since=0)]
    assert {score(a, weights) for a in agents[:3]} == {0.75}
    assert _chosen_id(agents, "billing", weights) == "b"
    agents[0].idle_since = 30
    assert _chosen_id(agents, "billing", weights) == "c"
    agents[1].idle_since = 20
    assert _chosen_id(agents, "billing", weights) == "a"


def test_float_noise_does_not_decide_between_equal_scores() -> None:
    """0.1 + 0.2 and 0.3 count as equal, so the longer idle agent wins."""
    weights = Weights(load=1.0, response_time=1.0, response_time_scale_ms=60_000.0)
    mixed = _timed("mixed", load=1, max_chats=10, response_ms=15_000, idle_since=1)
    plain = _timed("plain", load=3, max_chats=10, response_ms=0, idle_since=2)
    assert score(mixed, weights) != score(plain, weights)  # 0.30000000000000004 vs 0.3
    assert _chosen_id([plain, mixed], None, weights) == "mixed"


def _timed_slots(rows: list[tuple[int, int, str, int, int, float | None]]) -> list[AgentSlot]:
    return [AgentSlot(agent_id=f"a{i}", max_chats=max_chats,
                      skills=frozenset(s for bit, s in enumerate(SKILLS) if mask >> bit & 1),
                      presence=presence, load=min(load, max_chats + 1), idle_since=idle,
                      response_ms=rt)
            for i, (max_chats, mask, presence, load, idle, rt) in enumerate(rows)]


# Few distinct values, so that equal scores (and so the tie rules) come up often.
response_times = st.none() | st.sampled_from([0.0, 1_000.0, 30_000.0, 60_000.0]) | st.floats(
    min_value=0, max_value=1e7, allow_nan=False)
timed_agent_lists = st.lists(st.tuples(st.integers(1, 6), st.integers(0, 7),
                                       st.sampled_from(PRESENCES), st.integers(0, 7),
                                       st.integers(0, 3), response_times),
                             max_size=10).map(_timed_slots)
weight_values = st.sampled_from([0.0, 0.5, 1.0, 2.0]) | st.floats(min_value=0, max_value=10)
weights_strategy = st.builds(
    Weights, load=weight_values, response_time=weight_values,
    response_time_scale_ms=st.sampled_from([1_000.0, 60_000.0]) | st.floats(
        min_value=1, max_value=1e6))


@given(agents=timed_agent_lists, skill=skill_or_none, weights=weights_strategy)
def test_weighted_choice_is_eligible_and_none_iff_nobody_is(
        agents: list[AgentSlot], skill: str | None, weights: Weights) -> None:
    """Whatever the weights, the chosen agent is online, has room and the skill; None iff no
    agent is eligible."""
    chosen = choose_agent(agents, skill, weights)
    assert (chosen is None) == (_eligible(agents, skill) == [])
    if chosen is not None:
        assert chosen in agents
        assert chosen.presence == "online"
        assert chosen.load < chosen.max_chats
        assert skill is None or skill in chosen.skills


@given(agents=timed_agent_lists, skill=skill_or_none, weights=weights_strategy,
       data=st.data())
def test_weighted_choice_is_deterministic_and_order_independent(
        agents: list[AgentSlot], skill: str | None, weights: Weights,
        data: st.DataObject) -> None:
    """The same agents and weights give the same choice, in any order of the list."""
    first = _chosen_id(agents, skill, weights)
    assert _chosen_id(agents, skill, weights) == first
    shuffled = list(data.draw(st.permutations(agents)))
    assert _chosen_id(shuffled, skill, weights) == first


@given(agents=timed_agent_lists, skill=skill_or_none, weights=weights_strategy)
def test_weighted_choice_has_the_lowest_score(agents: list[AgentSlot], skill: str | None,
                                              weights: Weights) -> None:
    """No eligible agent has a lower (rounded) score, nor an equal one and an earlier
    idle_since, nor an equal one, an equal idle_since and a smaller id."""
    chosen = choose_agent(agents, skill, weights)
    if chosen is None:
        return
    best = round(score(chosen, weights), 9)
    for other in _eligible(agents, skill):
        other_score = round(score(other, weights), 9)
        assert other_score >= best
        if other_score == best:
            assert (other.idle_since, other.agent_id) >= (chosen.idle_since, chosen.agent_id)


# --- explain ---------------------------------------------------------------------------


def test_explain_reports_the_score_and_its_inputs() -> None:
    """explain() names the policy, the rounded score, load, max_chats, the rounded
    response time and the two weights."""
    weights = Weights(load=2.0, response_time=0.5, response_time_scale_ms=60_000.0)
    agent = _timed("a", load=1, max_chats=4, response_ms=12_345.6)
    assert explain(agent, weights) == {
        "policy": "score", "score": 0.5853, "load": 1, "max_chats": 4, "response_ms": 12_346,
        "weights": {"load": 2.0, "response_time": 0.5}}


def test_explain_of_an_unmeasured_agent_is_json() -> None:
    """An unmeasured agent's response_ms is None, and the explanation serialises as JSON."""
    reason = explain(_timed("a", load=0, max_chats=2), Weights())
    assert reason["response_ms"] is None
    assert reason["score"] == 0.25  # 0 load + 0.5 * 0.5
    assert json.loads(json.dumps(reason)) == reason


# --- ewma ------------------------------------------------------------------------------


def test_ewma_first_sample_is_the_mean() -> None:
    """Without a previous mean, the sample itself becomes the mean."""
    assert ewma(None, 1234.5, 0.2) == 1234.5


def test_ewma_weights_the_new_sample_by_alpha() -> None:
    """mean' = alpha * sample + (1 - alpha) * mean."""
    assert ewma(200.0, 100.0, 0.2) == pytest.approx(180.0)
    assert ewma(200.0, 100.0, 1.0) == 100.0
    assert ewma(0.0, 1000.0, 0.5) == 500.0


@given(mean=st.floats(min_value=0, max_value=1e9), sample=st.floats(min_value=0, max_value=1e9),
       alpha=st.floats(min_value=0, max_value=1))
def test_ewma_stays_between_mean_and_sample(mean: float, sample: float, alpha: float) -> None:
    """The new mean lies between the old mean and the sample."""
    result = ewma(mean, sample, alpha)
    slack = 1e-9 * max(mean, sample, 1.0)
    assert min(mean, sample) - slack <= result <= max(mean, sample) + slack


# --- priority_for ----------------------------------------------------------------------


INBOX_PRIORITY = {"sales": 3, "vip-line": 0}


@pytest.mark.parametrize("value", ["true", "TRUE", "True", "1", "yes", "YES", "Yes"])
def test_vip_visitor_gets_priority_zero(value: str) -> None:
    """A VIP attribute of true/1/yes (any case) gives priority 0, over the inbox's."""
    assert priority_for({"vip": value}, "sales", INBOX_PRIORITY, "vip", 1) == 0


@pytest.mark.parametrize("value", ["false", "0", "no", "", "y", "vip", "2"])
def test_non_vip_value_falls_back_to_inbox_or_default(value: str) -> None:
    """Any other VIP attribute value gives the inbox's priority, else the default."""
    assert priority_for({"vip": value}, "sales", INBOX_PRIORITY, "vip", 1) == 3
    assert priority_for({"vip": value}, None, INBOX_PRIORITY, "vip", 2) == 2


def test_vip_attribute_not_configured_is_ignored() -> None:
    """Without a vip_attribute, a visitor's 'vip: true' changes nothing."""
    assert priority_for({"vip": "true"}, None, INBOX_PRIORITY, None, 4) == 4
    assert priority_for({"vip": "true"}, "sales", INBOX_PRIORITY, None, 4) == 3
    assert priority_for({"vip": "true"}, None, INBOX_PRIORITY, "", 4) == 4


def test_missing_vip_attribute_is_not_vip() -> None:
    """A visitor without the configured attribute is not a VIP."""
    assert priority_for({"plan": "true"}, None, {}, "vip", 1) == 1


def test_inbox_priority_mapping() -> None:
    """A known inbox gives its priority (0 included); an unknown or no inbox the default."""
    assert priority_for({}, "sales", INBOX_PRIORITY, "vip", 1) == 3
    assert priority_for({}, "vip-line", INBOX_PRIORITY, "vip", 1) == 0
    assert priority_for({}, "web", INBOX_PRIORITY, "vip", 1) == 1
    assert priority_for({}, None, INBOX_PRIORITY, "vip", 7) == 7


# --- WaitQueue: priority aging ---------------------------------------------------------


def _ids(queue: WaitQueue) -> list[str]:
    return [cid for cid, _ in queue.ordered()]


def test_aging_lets_an_older_conversation_ahead_of_a_more_urgent_one() -> None:
    """With aging_s=10, priority 2 queued at t=0 goes before priority 1 queued at t=15 s
    (both age to 1 at t=15 s, to 0 at t=25 s; the older wins the tie)."""
    queue = WaitQueue(aging_s=10)
    queue.push("ordinary", None, 0, priority=2)
    queue.push("urgent", None, 15_000, priority=1)
    assert _ids(queue) == ["ordinary", "urgent"]
    assert _ids(queue) == ["ordinary", "urgent"]
    assert _ids(queue) == ["ordinary", "urgent"]
    no_aging = WaitQueue(aging_s=10**6)
    no_aging.push("ordinary", None, 0, priority=2)
    no_aging.push("urgent", None, 15_000, priority=1)
    assert _ids(no_aging) == ["urgent", "ordinary"]


def test_priority_counts_as_arriving_later() -> None:
    """Priority p queues as if it had arrived p * aging_s later: an ordinary (1) conversation
    goes before urgent (0) ones that arrive more than aging_s after it, not before."""
    queue = WaitQueue(aging_s=10)
    queue.push("old", None, 0, priority=1)
    queue.push("new-soon", None, 9_999, priority=0)
    queue.push("new-late", None, 10_001, priority=0)
    assert _ids(queue) == ["new-soon", "old", "new-late"]


def test_front_priority_goes_before_earlier_priority_zero() -> None:
    """A requeued conversation (FRONT_PRIORITY) goes before priority-0 ones queued earlier,
    when none has waited an aging period."""
    queue = WaitQueue()
    queue.push("urgent-1", None, 100, priority=0)
    queue.push("urgent-2", None, 200, priority=0)
    queue.push("normal", None, 50, priority=1)
    queue.push("requeued", None, 300, priority=FRONT_PRIORITY)
    assert _ids(queue) == ["requeued", "urgent-1", "urgent-2", "normal"]


def test_front_priority_is_ahead_even_of_aged_conversations() -> None:
    """A conversation requeued now is at the head even when others have waited long."""
    queue = WaitQueue(aging_s=120)
    queue.push("waiting", None, 0, priority=0)
    queue.push("requeued", None, 120_000, priority=FRONT_PRIORITY)
    assert _ids(queue)[0] == "requeued"


def test_entries_report_position_per_skill_and_wait() -> None:
    """entries(now) lists head first with skill, pushed priority, per-skill position and
    waiting_ms = now - enqueued_ts."""
    queue = WaitQueue(aging_s=3600)
    queue.push("b1", "billing", 1_000, priority=1)
    queue.push("t1", "tech", 2_000, priority=1)
    queue.push("b2", "billing", 3_000, priority=0)
    queue.push("n1", None, 4_000, priority=FRONT_PRIORITY)
    assert queue.entries(10_000) == [
        {"conversation_id": "n1", "skill": None, "priority": -1, "position": 1,
         "waiting_ms": 6_000},
        {"conversation_id": "b2", "skill": "billing", "priority": 0, "position": 1,
         "waiting_ms": 7_000},
        {"conversation_id": "b1", "skill": "billing", "priority": 1, "position": 2,
         "waiting_ms": 9_000},
        {"conversation_id": "t1", "skill": "tech", "priority": 1, "position": 1,
         "waiting_ms": 8_000},
    ]


def test_entries_never_report_a_negative_wait() -> None:
    """An entry enqueued after `now` (clock skew) reports waiting_ms 0."""
    queue = WaitQueue()
    queue.push("c1", None, 5_000)
    assert queue.entries(4_000)[0]["waiting_ms"] == 0
    assert WaitQueue().entries(0) == []


# (ts, priority, skill) per conversation c0, c1, ...; ts on a coarse grid so that equal
# times, and entries exactly whole aging periods apart, come up.
queue_rows = st.lists(st.tuples(st.integers(0, 50).map(lambda t: t * 5_000),
                                st.integers(FRONT_PRIORITY, 3), skill_or_none), max_size=12)
aging_values = st.sampled_from([1.0, 10.0, 120.0])
times = st.integers(0, 400_000) | st.integers(0, 10**9)


def _queue(rows: list[tuple[int, int, str | None]], aging_s: float) -> WaitQueue:
    queue = WaitQueue(aging_s=aging_s)
    for i, (ts, priority, skill) in enumerate(rows):
        assert queue.push(f"c{i}", skill, ts, priority)
    return queue


@given(rows=queue_rows, aging_s=aging_values)
def test_fifo_within_equal_priority(rows: list[tuple[int, int, str | None]],
                                    aging_s: float) -> None:
    """Of two conversations with the same priority, the one queued first is ahead (pushed
    at the same time: the one pushed first)."""
    index = {cid: i for i, cid in enumerate(_ids(_queue(rows, aging_s)))}
    for x, (ts_x, p_x, _) in enumerate(rows):
        for y, (ts_y, p_y, _) in enumerate(rows):
            if p_x == p_y and (ts_x, x) < (ts_y, y):
                assert index[f"c{x}"] < index[f"c{y}"]


@given(rows=queue_rows, aging_s=aging_values)
def test_no_starvation(rows: list[tuple[int, int, str | None]], aging_s: float) -> None:
    """A conversation is never behind one queued more than (priority difference) aging
    periods after it: however urgent the newcomers, each waiting conversation reaches the
    head."""
    aging_ms = aging_s * 1000
    index = {cid: i for i, cid in enumerate(_ids(_queue(rows, aging_s)))}
    for x, (ts_x, p_x, _) in enumerate(rows):
        for y, (ts_y, p_y, _) in enumerate(rows):
            # Requeued (front) conversations go before all; among the rest, priority
            # counts as arriving later.
            if p_x >= 0 and p_y >= 0 and ts_y - ts_x > aging_ms * (p_x - p_y):
                assert index[f"c{x}"] < index[f"c{y}"], (x, y)


@given(rows=queue_rows, aging_s=aging_values, now=times)
def test_entries_agree_with_ordered_and_positions(rows: list[tuple[int, int, str | None]],
                                                  aging_s: float, now: int) -> None:
    """entries(now) has ordered(now)'s order, positions(now)'s positions, the pushed
    priority and waiting_ms = max(0, now - enqueued_ts)."""
    queue = _queue(rows, aging_s)
    entries = queue.entries(now)
    assert [(e["conversation_id"], e["skill"]) for e in entries] == queue.ordered()
    positions = queue.positions()
    for entry in entries:
        ts, priority, skill = rows[int(entry["conversation_id"][1:])]
        assert entry["position"] == positions[entry["conversation_id"]]
        assert entry["priority"] == priority
        assert entry["skill"] == skill
        assert entry["waiting_ms"] == max(0, now - ts)


# --- matches: the dispatch loop ----------------------------------------------------------


def _naive_matches(queue: WaitQueue, agents: list[AgentSlot],
                   weights: Weights) -> list[tuple[str, str]]:
    """The obvious reference: every queued conversation in order, best agent over all."""
    out = []
    for cid, skill in queue.ordered():
        chosen = choose_agent(agents, skill, weights)
        if chosen is not None:
            chosen.load += 1
            out.append((cid, chosen.agent_id))
    return out


@given(rows=queue_rows, agents=st.lists(
    st.builds(AgentSlot, agent_id=st.sampled_from([f"a{i}" for i in range(8)]),
              max_chats=st.integers(1, 3), skills=st.frozensets(st.sampled_from(SKILLS)),
              presence=st.sampled_from(["online", "online", "away", "offline"]),
              load=st.integers(0, 3), idle_since=st.integers(0, 5)),
    max_size=6, unique_by=lambda a: a.agent_id))
def test_matches_equal_the_naive_loop_and_respect_capacity(
        rows: list[tuple[int, int, str | None]], agents: list[AgentSlot]) -> None:
    """matches() gives exactly what choosing over all agents for each queued conversation in
    order gives, never fills an agent past max_chats, never picks an ineligible one."""
    weights = Weights()
    reference = _naive_matches(_queue(rows, 10.0), copy.deepcopy(agents), weights)
    got = []
    start = {a.agent_id: a.load for a in agents}
    for cid, slot in matches(_queue(rows, 10.0), agents, weights):
        skill = rows[int(cid[1:])][2]
        assert slot.eligible(skill)
        slot.load += 1  # what the router does after a successful assignment
        got.append((cid, slot.agent_id))
    assert got == reference
    for agent in agents:
        assert agent.load <= max(agent.max_chats, start[agent.agent_id])


def test_matches_stops_at_once_without_free_agents() -> None:
    """With every agent full or not online, matches() yields nothing, however long the
    queue (it must not scan it)."""
    queue = WaitQueue()
    for i in range(1000):
        queue.push(f"c{i}", None, i)
    agents = [AgentSlot("a1", 1, load=1, presence="online"),
              AgentSlot("a2", 5, presence="away")]
    assert list(matches(queue, agents)) == []


def test_matches_avoids_the_agent_who_missed_the_deadline_if_it_can() -> None:
    """A conversation to avoid an agent for goes to another eligible agent, even a worse
    scoring one; back to the same agent only when no one else can take it."""
    queue = WaitQueue()
    queue.push("c1", "billing", 0)
    best = AgentSlot("a1", 5, frozenset({"billing"}), "online")
    worse = AgentSlot("a2", 5, frozenset({"billing"}), "online", load=4)
    assert [(c, a.agent_id) for c, a in matches(queue, [best, worse])] == [("c1", "a1")]
    assert [(c, a.agent_id) for c, a in matches(queue, [best, worse], avoid={"c1": "a1"})] \
        == [("c1", "a2")]
    assert [(c, a.agent_id) for c, a in matches(queue, [best], avoid={"c1": "a1"})] \
        == [("c1", "a1")]
