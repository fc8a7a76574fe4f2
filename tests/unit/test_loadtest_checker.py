"""The load test's exactly-once, in-order bookkeeping (raydesk/loadtest/checker.py)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from raydesk.loadtest.checker import Ack, Stream, check

CID = "c_1"


def origin(seq: int) -> str:
    return f"v_1/lt0.{seq}.1"


def acks(seqs: set[int]) -> list[Ack]:
    return [Ack(CID, seq, origin(seq)) for seq in sorted(seqs)]


def customer_stream(arrivals: list[int]) -> Stream:
    stream = Stream("v_1", "customer", CID)
    for seq in arrivals:
        stream.on_live(seq, origin(seq))
    return stream


@st.composite
def runs(draw: st.DrawFn) -> tuple[int, set[int], list[int], set[int]]:
    """n stored-or-lost messages, the acked ones, the live arrivals (any order, repeats,
    gaps), and the seqs the store does not have."""
    n = draw(st.integers(1, 30))
    acked = draw(st.sets(st.integers(1, n)))
    arrivals = draw(st.lists(st.integers(1, n), max_size=3 * n))
    missing = draw(st.sets(st.integers(1, n))) - set(arrivals)
    return n, acked, arrivals, missing


def final_sync(stream: Stream, n: int, missing: set[int]) -> None:
    """What the final sync returns: every stored seq after the last contiguous one."""
    for seq in range(stream.contiguous() + 1, n + 1):
        if seq not in missing:
            stream.on_final(seq, origin(seq))
    stream.final_synced = True


@given(runs())
def test_every_acked_message_is_delivered_late_or_lost(
        run: tuple[int, set[int], list[int], set[int]]) -> None:
    """Each acked message has exactly one outcome, and it is the right one."""
    n, acked, arrivals, missing = run
    stream = customer_stream(arrivals)
    final_sync(stream, n, missing)
    verdict = check(acks(acked), [stream])
    arrived = set(arrivals)
    assert verdict.acked == verdict.expected == len(acked)
    assert verdict.delivered == len(acked & arrived)
    assert verdict.late == len((acked - arrived) - missing)
    assert verdict.lost == len((acked - arrived) & missing)
    assert verdict.unverified == 0
    assert verdict.delivered + verdict.late + verdict.lost == verdict.expected


@given(runs())
def test_repeats_are_duplicates_and_late_arrivals_reordered(
        run: tuple[int, set[int], list[int], set[int]]) -> None:
    """Duplicates count every extra arrival; reordering is zero exactly when the first
    arrivals ascend."""
    _, acked, arrivals, _ = run
    verdict = check(acks(acked), [customer_stream(arrivals)])
    assert verdict.duplicated == len(arrivals) - len(set(arrivals))
    firsts = list(dict.fromkeys(arrivals))
    assert (verdict.reordered == 0) == (firsts == sorted(firsts))
    assert verdict.reordered <= max(0, len(firsts) - 1)


@given(st.integers(1, 40))
def test_in_order_once_is_exactly_once(n: int) -> None:
    """Every seq once, ascending: all delivered, nothing else counted."""
    verdict = check(acks(set(range(1, n + 1))), [customer_stream(list(range(1, n + 1)))])
    assert verdict.exactly_once
    assert verdict.delivered == n and verdict.late == verdict.lost == 0


def test_agent_is_checked_only_from_its_assignment() -> None:
    """An agent assigned at seq 4 owes nothing before it; history it syncs is not live."""
    customer = customer_stream([1, 2, 3, 4, 5, 6])
    agent = Stream("a_1", "agent", CID, start=4)
    for seq in (4, 5):
        agent.on_live(seq, origin(seq))
    agent.syncs_in_flight = 1  # its history sync overlaps the live events
    for seq in (1, 2, 3, 4, 5):
        agent.on_live(seq, origin(seq))
    agent.syncs_in_flight = 0
    agent.final_synced = customer.final_synced = True
    verdict = check(acks({2, 5, 6}), [customer, agent])
    # seq 2: the customer only; 5: both; 6: both, but the agent never got it.
    assert verdict.expected == 5
    assert verdict.delivered == 4 and verdict.lost == 1
    assert verdict.duplicated == 0 and verdict.reordered == 0
    assert agent.live == {4, 5}


def test_agent_stops_being_entitled_after_a_requeue() -> None:
    """Once the conversation was taken back (end), later seqs are not the agent's."""
    agent = Stream("a_1", "agent", CID, start=4, end=6)
    for seq in (4, 5, 6):
        agent.on_live(seq, origin(seq))
    verdict = check(acks({5, 8}), [customer_stream(list(range(1, 9))), agent])
    assert verdict.expected == 3 and verdict.delivered == 3


def test_without_a_completed_final_sync_a_missing_message_is_unverified() -> None:
    """Not live and never confirmed absent: unverified, not lost."""
    stream = customer_stream([1, 3])
    verdict = check(acks({2}), [stream])
    assert verdict.unverified == 1 and verdict.lost == 0 and verdict.exactly_once
    stream.final_synced = True
    assert check(acks({2}), [stream]).lost == 1


def test_another_message_at_the_acked_seq_is_lost() -> None:
    """The ack promised seq 2; the store holds someone else's message there."""
    stream = Stream("v_1", "customer", CID)
    stream.on_live(1)
    stream.on_live(2, "v_1/other")
    verdict = check(acks({2}), [stream])
    assert verdict.lost == 1 and not verdict.exactly_once


def test_one_message_stored_twice_is_a_duplicate() -> None:
    """One client_msg_id at two seqs: the server's deduplication failed."""
    stream = Stream("v_1", "customer", CID)
    stream.on_live(2, origin(2))
    stream.on_live(3, origin(2))
    assert check([Ack(CID, 2, origin(2))], [stream]).duplicated == 1


def test_a_conversation_its_customer_never_heard_of_is_lost() -> None:
    """No stream at all for an acked message's conversation: lost, once."""
    verdict = check(acks({2}), [])
    assert verdict.expected == verdict.lost == 1


def test_a_resend_acked_twice_is_checked_once() -> None:
    """A resend with the same client_msg_id gets the same ack: one promise."""
    verdict = check([Ack(CID, 2, origin(2))] * 2, [customer_stream([1, 2])])
    assert verdict.acked == verdict.delivered == 1


def test_contiguous_is_where_a_sync_must_start() -> None:
    stream = customer_stream([1, 2, 4])
    assert stream.contiguous() == 2
    assert Stream("a_1", "agent", CID, start=4).contiguous() == 3
