"""raydesk.session.Outbox: a connection's frames in order, bounded, with one waiter (pure
logic on a real event loop)."""

from __future__ import annotations

import asyncio

from raydesk.session import Outbox


async def test_frames_come_out_in_order_and_all_at_once() -> None:
    outbox = Outbox(limit=10)
    for n in range(3):
        assert outbox.put((f"f{n}", float(n)))
    assert await outbox.take() == [("f0", 0.0), ("f1", 1.0), ("f2", 2.0)]
    outbox.put(("f3", 3.0))
    assert await outbox.take() == [("f3", 3.0)]


async def test_a_full_outbox_refuses_but_a_forced_close_still_goes_in() -> None:
    outbox = Outbox(limit=2)
    assert outbox.put(("a", 0.0)) and outbox.put(("b", 0.0))
    assert not outbox.put(("c", 0.0))  # the caller closes the slow connection
    assert outbox.put(None, force=True)
    assert await outbox.take() == [("a", 0.0), ("b", 0.0), None]


async def test_take_waits_until_something_is_put() -> None:
    outbox = Outbox(limit=5)
    taking = asyncio.ensure_future(outbox.take())
    await asyncio.sleep(0)
    assert not taking.done()
    outbox.put(("late", 1.0))
    assert await asyncio.wait_for(taking, 5) == [("late", 1.0)]
    again = asyncio.ensure_future(outbox.take())  # a second wait gets a new waiter
    await asyncio.sleep(0)
    outbox.put(None, force=True)
    assert await asyncio.wait_for(again, 5) == [None]
