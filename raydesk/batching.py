"""Group commit: many callers' items carried by one call.

A Ray call costs ~0.8 ms of CPU and a store round trip about as much as the work it
carries, so neither may be paid per message. A :class:`Batcher` collects the items that
arrive while a flush is in flight and sends them together in the next one; at low load a
lone item goes at once (no timer, so no added latency).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")

log = logging.getLogger("raydesk.batching")


class Batcher(Generic[Item, Result]):
    """Coalesces ``submit`` calls into calls of ``flush(items) -> results``.

    ``flush`` returns one result per item, in order; a result that is an exception is
    raised to that item's caller alone. If ``flush`` itself raises, every item of that
    batch gets the exception. At most ``max_in_flight`` flushes run at once and each
    carries at most ``max_batch`` items. Items are flushed in submission order.
    ``linger_s``: how long a flush waits for more items once it may start (none by
    default: whatever arrives while a flush runs rides in the next one anyway).
    """

    def __init__(
        self,
        flush: Callable[[list[Item]], Awaitable[Sequence[Result | BaseException]]],
        max_batch: int = 512,
        max_in_flight: int = 2,
        linger_s: float = 0.0,
    ) -> None:
        self._flush = flush
        self._max_batch = max_batch
        self._linger_s = linger_s
        self._slots = asyncio.Semaphore(max_in_flight)
        self._pending: list[tuple[Item, asyncio.Future[Result]]] = []
        self._draining = False

    async def submit(self, item: Item) -> Result:
        future: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        if not self._draining:
            self._draining = True
            asyncio.get_running_loop().create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        try:
            while self._pending:
                await self._slots.acquire()
                if self._linger_s > 0:
                    await asyncio.sleep(self._linger_s)
                batch = self._pending[: self._max_batch]
                del self._pending[: self._max_batch]
                asyncio.get_running_loop().create_task(self._run(batch))
        finally:
            self._draining = False

    async def _run(self, batch: list[tuple[Item, asyncio.Future[Result]]]) -> None:
        try:
            results = await self._flush([item for item, _ in batch])
            if len(results) != len(batch):
                raise RuntimeError(f"flush returned {len(results)} results for {len(batch)}")
        except BaseException as exc:
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        finally:
            self._slots.release()
        for (_, future), result in zip(batch, results, strict=True):
            if future.done():
                continue
            if isinstance(result, BaseException):
                future.set_exception(result)
            else:
                future.set_result(result)


class Deferred(Generic[Item]):
    """Fire-and-forget items held for up to ``delay_s`` per key, then sent together with
    ``send(key, items)``; :meth:`flush` sends a key's items at once (so that a later
    message to the same receiver never overtakes them). For tells that nobody waits on,
    where a short delay costs nothing and one call per item costs a Ray call each."""

    def __init__(self, send: Callable[[str, list[Item]], None], delay_s: float) -> None:
        self._send = send
        self._delay_s = delay_s
        self._held: dict[str, list[Item]] = {}

    def add(self, key: str, item: Item) -> None:
        held = self._held.setdefault(key, [])
        held.append(item)
        if len(held) == 1:
            asyncio.get_running_loop().call_later(self._delay_s, self.flush, key)

    def flush(self, key: str) -> None:
        held = self._held.pop(key, None)
        if held:
            self._send(key, held)
