"""raydesk.conversation: state round trip, the status machine, permissions, sequencing."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from raydesk.conversation import TRANSITIONS, Conversation, IllegalTransition, Status
from raydesk.errors import Conflict, Forbidden, NotFound


def _conv(status: Status = Status.ASSIGNED, last_seq: int = 4,
          assignee: str | None = "a1") -> Conversation:
    return Conversation(id="c1", customer="v1", status=status, last_seq=last_seq,
                        assignee=assignee, skill="billing", inbox="web",
                        created_ts=1_000, updated_ts=2_000)


# --- state -----------------------------------------------------------------------------


def test_state_round_trip_with_every_field() -> None:
    """from_state(to_state()) rebuilds an equal conversation."""
    conv = _conv()
    state = conv.to_state()
    assert all(isinstance(v, str) for v in state.values())
    assert Conversation.from_state("c1", state) == conv


def test_state_round_trip_with_empty_optionals() -> None:
    """None assignee, skill and inbox are stored as '' and read back as None."""
    conv = Conversation(id="c2", customer="v2", status=Status.QUEUED)
    state = conv.to_state()
    assert state["assignee"] == state["skill"] == state["inbox"] == ""
    back = Conversation.from_state("c2", state)
    assert back == conv
    assert back.assignee is None and back.skill is None and back.inbox is None


@given(status=st.sampled_from(list(Status)),
       last_seq=st.integers(min_value=0, max_value=2**53),
       assignee=st.none() | st.text(min_size=1, max_size=20),
       skill=st.none() | st.text(min_size=1, max_size=20),
       ts=st.integers(min_value=0, max_value=2**53),
       priority=st.integers(min_value=-1, max_value=100),
       awaiting_since=st.none() | st.integers(min_value=0, max_value=2**53))
def test_state_round_trip_property(status: Status, last_seq: int, assignee: str | None,
                                   skill: str | None, ts: int, priority: int,
                                   awaiting_since: int | None) -> None:
    """Any conversation survives to_state/from_state unchanged."""
    conv = Conversation(id="c", customer="v", status=status, last_seq=last_seq,
                        assignee=assignee, skill=skill, created_ts=ts, updated_ts=ts + 1,
                        priority=priority, awaiting_since=awaiting_since)
    assert Conversation.from_state("c", conv.to_state()) == conv


@pytest.mark.parametrize(("priority", "awaiting_since", "stored"), [
    (0, None, ("0", "")), (-1, 0, ("-1", "0")), (7, 1_700_000_000_123, ("7", "1700000000123"))])
def test_state_round_trip_of_priority_and_clock(priority: int, awaiting_since: int | None,
                                                stored: tuple[str, str]) -> None:
    """priority and awaiting_since are stored as strings ('' for no clock; 0 is a time, not
    None) and read back unchanged."""
    conv = Conversation(id="c", customer="v", status=Status.QUEUED, priority=priority,
                        awaiting_since=awaiting_since)
    state = conv.to_state()
    assert (state["priority"], state["awaiting_since"]) == stored
    back = Conversation.from_state("c", state)
    assert (back.priority, back.awaiting_since) == (priority, awaiting_since)


def test_state_without_the_new_fields_reads_as_defaults() -> None:
    """A state hash written before priority and awaiting_since existed (or with them empty)
    reads as priority 0 and no clock."""
    for extra in ({}, {"priority": "", "awaiting_since": ""}):
        conv = Conversation.from_state("c", {"customer": "v", "status": "assigned",
                                             "assignee": "a1", **extra})
        assert (conv.priority, conv.awaiting_since) == (0, None)


def test_from_state_fills_missing_numbers_with_zero() -> None:
    """A minimal state hash (customer and status) gives zero seq and times."""
    conv = Conversation.from_state("c", {"customer": "v", "status": "bot"})
    assert (conv.status, conv.last_seq, conv.created_ts, conv.updated_ts) == (
        Status.BOT, 0, 0, 0)


@pytest.mark.parametrize("state", [{}, {"status": "queued", "last_seq": "3"}])
def test_from_state_without_a_conversation_is_not_found(state: dict[str, str]) -> None:
    """An empty state hash (or one without a customer) raises NotFound naming the id."""
    with pytest.raises(NotFound, match="c404"):
        Conversation.from_state("c404", state)


def test_participants() -> None:
    """Participants are the customer, plus the assignee when there is one."""
    assert _conv().participants == ["v1", "a1"]
    assert _conv(status=Status.QUEUED, assignee=None).participants == ["v1"]
    assert _conv().is_participant("a1") and _conv().is_participant("v1")
    assert not _conv().is_participant("a2")


# --- status machine --------------------------------------------------------------------


LEGAL = {(Status.BOT, Status.QUEUED), (Status.BOT, Status.CLOSED),
         (Status.QUEUED, Status.ASSIGNED), (Status.QUEUED, Status.CLOSED),
         (Status.ASSIGNED, Status.ASSIGNED), (Status.ASSIGNED, Status.QUEUED),
         (Status.ASSIGNED, Status.CLOSED)}


def test_transition_table_is_the_documented_machine() -> None:
    """TRANSITIONS allows exactly bot->queued->assigned->closed, transfers and closing."""
    table = {(a, b) for a, targets in TRANSITIONS.items() for b in targets}
    assert table == LEGAL
    assert set(TRANSITIONS) == set(Status)
    assert TRANSITIONS[Status.CLOSED] == frozenset()


@pytest.mark.parametrize(("frm", "to"), sorted(LEGAL))
def test_legal_transitions_pass(frm: Status, to: Status) -> None:
    """check_transition accepts every legal change."""
    _conv(status=frm).check_transition(to)


ILLEGAL = sorted(set(itertools.product(Status, Status)) - LEGAL)


@pytest.mark.parametrize(("frm", "to"), ILLEGAL)
def test_illegal_transitions_raise_conflict(frm: Status, to: Status) -> None:
    """check_transition raises IllegalTransition (a Conflict) naming both statuses."""
    with pytest.raises(IllegalTransition) as info:
        _conv(status=frm).check_transition(to)
    assert isinstance(info.value, Conflict)
    assert info.value.code == "conflict"
    assert frm.value in info.value.message and to.value in info.value.message


def test_closed_is_final() -> None:
    """A closed conversation cannot become anything, not even closed again."""
    assert len(ILLEGAL) == 9
    for to in Status:
        with pytest.raises(IllegalTransition):
            _conv(status=Status.CLOSED).check_transition(to)


# --- permissions -----------------------------------------------------------------------


def test_customer_reads_only_its_own() -> None:
    """A customer reads its own conversation; another customer gets NotFound."""
    conv = _conv()
    conv.check_can_read("v1", is_agent=False)
    with pytest.raises(NotFound):
        conv.check_can_read("v2", is_agent=False)


def test_customer_cannot_read_by_guessing_an_agent_id() -> None:
    """A customer whose id equals the assignee's is still not let in as a reader."""
    with pytest.raises(NotFound):
        _conv().check_can_read("a1", is_agent=False)


@pytest.mark.parametrize("agent", ["a1", "a2", "someone"])
def test_any_agent_reads_any_conversation(agent: str) -> None:
    """Agents read every conversation, assigned to them or not."""
    _conv().check_can_read(agent, is_agent=True)
    _conv(status=Status.QUEUED, assignee=None).check_can_read(agent, is_agent=True)


def test_participants_write() -> None:
    """The customer and the assigned agent may write."""
    conv = _conv()
    conv.check_can_write("v1", is_agent=False)
    conv.check_can_write("a1", is_agent=True)


def test_other_agent_cannot_write() -> None:
    """An agent that is not assigned gets Forbidden."""
    with pytest.raises(Forbidden):
        _conv().check_can_write("a2", is_agent=True)
    with pytest.raises(Forbidden):
        _conv(status=Status.QUEUED, assignee=None).check_can_write("a1", is_agent=True)


def test_other_customer_cannot_write_and_learns_nothing() -> None:
    """Another customer gets NotFound (not Forbidden), so it can't probe for ids."""
    with pytest.raises(NotFound):
        _conv().check_can_write("v2", is_agent=False)


# --- sequencing ------------------------------------------------------------------------


@given(last_seq=st.integers(min_value=0, max_value=10**9), count=st.integers(0, 50))
def test_next_seqs_are_consecutive_after_last_seq(last_seq: int, count: int) -> None:
    """next_seqs(n) is last_seq+1 .. last_seq+n, and does not change last_seq."""
    conv = _conv(last_seq=last_seq)
    seqs = conv.next_seqs(count)
    assert len(seqs) == count
    assert seqs == [last_seq + 1 + i for i in range(count)]
    assert conv.last_seq == last_seq


def test_next_seqs_of_a_new_conversation_start_at_one() -> None:
    """A conversation with no messages numbers its first messages 1, 2, 3."""
    assert Conversation(id="c", customer="v", status=Status.BOT).next_seqs(3) == [1, 2, 3]
