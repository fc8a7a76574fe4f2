"""raydesk.routing: the agent choice policy and the wait queue (property tests)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from raydesk.routing import AgentSlot, WaitQueue, choose_agent

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
