"""raydesk.batching: group commit of concurrent submits, driven with a fake async flush."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Sequence

import pytest

from raydesk.batching import Batcher, Deferred

# Upper bound for any wait in these tests: a hang fails fast instead of hitting the
# suite's timeout. Nothing here sleeps for real; every step is driven by events. A slow
# machine can stretch it with RAYDESK_TEST_TIME_SCALE.
DEADLINE_S = 5.0 * float(os.environ.get("RAYDESK_TEST_TIME_SCALE", "1"))


class FakeFlush:
    """Records every batch; returns item*10; can hold batches until released."""

    def __init__(self, hold: bool = False) -> None:
        self.batches: list[list[int]] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.release = asyncio.Event()
        self.entered = asyncio.Event()
        if not hold:
            self.release.set()

    async def __call__(self, items: list[int]) -> Sequence[int | BaseException]:
        self.batches.append(list(items))
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        self.entered.set()
        try:
            await self.release.wait()
            await asyncio.sleep(0)
            return [item * 10 for item in items]
        finally:
            self.in_flight -= 1


async def _gather(*aws: Awaitable[object]) -> list[object]:
    return await asyncio.wait_for(asyncio.gather(*aws, return_exceptions=True), DEADLINE_S)


async def _settle() -> None:
    """Let every ready task run (a few loop turns)."""
    for _ in range(10):
        await asyncio.sleep(0)


async def test_lone_submit_is_flushed_at_once() -> None:
    """A single submit is flushed alone, without waiting for company, and gets its result."""
    flush = FakeFlush()
    batcher: Batcher[int, int] = Batcher(flush)
    assert await asyncio.wait_for(batcher.submit(7), DEADLINE_S) == 70
    assert flush.batches == [[7]]


async def test_concurrent_submits_are_coalesced_in_order() -> None:
    """100 concurrent submits go in very few flushes, in submission order, each caller
    getting its own result."""
    flush = FakeFlush()
    batcher: Batcher[int, int] = Batcher(flush)
    results = await _gather(*(batcher.submit(i) for i in range(100)))
    assert results == [i * 10 for i in range(100)]
    assert len(flush.batches) <= 2
    assert [item for batch in flush.batches for item in batch] == list(range(100))


async def test_items_arriving_during_a_flush_share_the_next_one() -> None:
    """While a flush is in flight, later submits wait and then go together in one flush."""
    flush = FakeFlush(hold=True)
    batcher: Batcher[int, int] = Batcher(flush, max_in_flight=1)
    first = asyncio.ensure_future(batcher.submit(0))
    await asyncio.wait_for(flush.entered.wait(), DEADLINE_S)
    rest = [asyncio.ensure_future(batcher.submit(i)) for i in range(1, 10)]
    await _settle()
    assert flush.batches == [[0]]
    flush.release.set()
    assert await _gather(first, *rest) == [i * 10 for i in range(10)]
    assert flush.batches == [[0], list(range(1, 10))]


@pytest.mark.parametrize(("count", "max_batch"), [(10, 4), (9, 3), (1, 1), (25, 1)])
async def test_max_batch_is_respected(count: int, max_batch: int) -> None:
    """No flush carries more than max_batch items, and order is kept across flushes."""
    flush = FakeFlush()
    batcher: Batcher[int, int] = Batcher(flush, max_batch=max_batch)
    results = await _gather(*(batcher.submit(i) for i in range(count)))
    assert results == [i * 10 for i in range(count)]
    assert all(1 <= len(batch) <= max_batch for batch in flush.batches)
    assert [item for batch in flush.batches for item in batch] == list(range(count))
    assert len(flush.batches) == -(-count // max_batch)


@pytest.mark.parametrize("max_in_flight", [1, 2, 3])
async def test_max_in_flight_is_respected(max_in_flight: int) -> None:
    """At most max_in_flight flushes run at the same time."""
    flush = FakeFlush(hold=True)
    batcher: Batcher[int, int] = Batcher(flush, max_batch=1, max_in_flight=max_in_flight)
    tasks = [asyncio.ensure_future(batcher.submit(i)) for i in range(8)]
    await _settle()
    assert flush.in_flight == max_in_flight
    flush.release.set()
    assert await _gather(*tasks) == [i * 10 for i in range(8)]
    assert flush.max_in_flight == max_in_flight
    assert [b[0] for b in flush.batches] == list(range(8))


async def test_per_item_exception_goes_to_that_caller_only() -> None:
    """A result that is an exception is raised to its own caller; the others get results."""
    async def flush(items: list[int]) -> Sequence[int | BaseException]:
        return [ValueError(f"bad {i}") if i % 3 == 0 else i for i in items]

    batcher: Batcher[int, int] = Batcher(flush)
    results = await _gather(*(batcher.submit(i) for i in range(7)))
    for i, result in enumerate(results):
        if i % 3 == 0:
            assert isinstance(result, ValueError) and str(result) == f"bad {i}"
        else:
            assert result == i


async def test_flush_exception_goes_to_every_caller_of_that_batch() -> None:
    """If flush raises, every item of that batch gets it; other batches are unaffected."""
    boom = RuntimeError("store down")
    held = asyncio.Event()
    batches: list[list[int]] = []

    async def flush(items: list[int]) -> Sequence[int]:
        batches.append(items)
        if items[0] == 0:
            await held.wait()
            return [0]
        raise boom

    batcher: Batcher[int, int] = Batcher(flush, max_in_flight=1)
    first = asyncio.ensure_future(batcher.submit(0))
    await _settle()
    failing = [asyncio.ensure_future(batcher.submit(i)) for i in (1, 2, 3)]
    await _settle()
    held.set()
    results = await _gather(first, *failing)
    assert batches == [[0], [1, 2, 3]]
    assert results[0] == 0
    assert results[1:] == [boom, boom, boom]


async def test_batcher_keeps_working_after_a_failed_flush() -> None:
    """A failed flush frees its slot: later submits are flushed normally."""
    calls = 0

    async def flush(items: list[int]) -> Sequence[int]:
        nonlocal calls
        calls += 1
        if calls <= 3:
            raise OSError("flaky")
        return items

    batcher: Batcher[int, int] = Batcher(flush, max_in_flight=1)
    for _ in range(3):
        with pytest.raises(OSError):
            await asyncio.wait_for(batcher.submit(1), DEADLINE_S)
    assert await asyncio.wait_for(batcher.submit(5), DEADLINE_S) == 5


async def test_wrong_result_count_fails_the_whole_batch() -> None:
    """A flush that returns too few results fails every caller of the batch (no hang)."""
    async def flush(items: list[int]) -> Sequence[int]:
        return items[:-1]

    batcher: Batcher[int, int] = Batcher(flush)
    results = await _gather(*(batcher.submit(i) for i in range(3)))
    assert all(isinstance(r, RuntimeError) for r in results)


async def test_cancelled_caller_does_not_disturb_the_others() -> None:
    """A caller cancelled while waiting is skipped; the rest of its batch still gets results."""
    flush = FakeFlush(hold=True)
    batcher: Batcher[int, int] = Batcher(flush)
    tasks = [asyncio.ensure_future(batcher.submit(i)) for i in range(3)]
    await asyncio.wait_for(flush.entered.wait(), DEADLINE_S)
    tasks[1].cancel()
    flush.release.set()
    results = await _gather(*tasks)
    assert results[0] == 0 and results[2] == 20
    assert isinstance(results[1], asyncio.CancelledError)


# --- Deferred ------------------------------------------------------------------------------

async def test_deferred_sends_each_keys_items_together_after_the_delay() -> None:
    sent: list[tuple[str, list[int]]] = []
    done = asyncio.Event()

    def send(key: str, items: list[int]) -> None:
        sent.append((key, items))
        if len(sent) == 2:
            done.set()

    deferred: Deferred[int] = Deferred(send, 0.01)
    for item in (1, 2, 3):
        deferred.add("a", item)
    deferred.add("b", 9)
    assert sent == []  # nothing goes before the delay
    await asyncio.wait_for(done.wait(), DEADLINE_S)
    assert sorted(sent) == [("a", [1, 2, 3]), ("b", [9])]


async def test_deferred_flush_sends_at_once_and_the_timer_then_sends_nothing_twice() -> None:
    sent: list[tuple[str, list[int]]] = []
    deferred: Deferred[int] = Deferred(lambda key, items: sent.append((key, items)), 0.01)
    deferred.add("a", 1)
    deferred.add("a", 2)
    deferred.flush("a")
    assert sent == [("a", [1, 2])]
    deferred.add("a", 3)  # a new hold, with its own timer
    deferred.flush("b")  # nothing held for b: nothing sent
    await asyncio.sleep(0.05)
    assert sent == [("a", [1, 2]), ("a", [3])]


async def test_linger_gathers_what_arrives_during_the_wait() -> None:
    """With ``linger_s`` a flush waits that long once it may start, and the submits that
    arrive meanwhile go in the same batch; without it the first goes alone at once."""
    flush = FakeFlush()
    batcher: Batcher[int, int] = Batcher(flush, max_in_flight=1, linger_s=0.05)
    first = asyncio.ensure_future(batcher.submit(1))
    await _settle()
    assert flush.batches == []  # still lingering
    later = [asyncio.ensure_future(batcher.submit(i)) for i in (2, 3)]
    assert await _gather(first, *later) == [10, 20, 30]
    assert flush.batches == [[1, 2, 3]]

    eager = FakeFlush()
    batcher = Batcher(eager, max_in_flight=1)
    first = asyncio.ensure_future(batcher.submit(1))
    await _settle()
    assert eager.batches == [[1]]
    assert await _gather(first, batcher.submit(2)) == [10, 20]
    assert eager.batches == [[1], [2]]
