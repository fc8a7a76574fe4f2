"""Work that must keep its order per key (a conversation) but not across keys."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable


class Chains:
    """Runs coroutines one after another per key and at the same time across keys: each
    key's newest task waits for the one before it, whatever became of that one.

    The gateway handles an agent's frames this way (per conversation), and a shard its
    bot turns. A key is forgotten when its last task is done.
    """

    __slots__ = ("_latest",)

    def __init__(self) -> None:
        self._latest: dict[str, asyncio.Task[None]] = {}

    def __len__(self) -> int:
        """Keys with work in flight."""
        return len(self._latest)

    def __contains__(self, key: object) -> bool:
        return key in self._latest

    def add(self, key: str, work: Callable[[], Awaitable[None]]) -> asyncio.Task[None]:
        """Run ``work()`` once the work added before for ``key`` is done (in the caller's
        context: a trace span, log fields)."""
        before = self._latest.get(key)

        async def in_turn() -> None:
            if before is not None:
                await asyncio.wait([before])
            await work()

        task = asyncio.get_running_loop().create_task(in_turn())
        self._latest[key] = task

        def forget(done: asyncio.Task[None]) -> None:
            if self._latest.get(key) is done:
                del self._latest[key]

        task.add_done_callback(forget)
        return task

    async def wait_any(self) -> None:
        """Until one key's newest task is done (returns at once if none is in flight)."""
        if self._latest:
            await asyncio.wait(set(self._latest.values()),
                               return_when=asyncio.FIRST_COMPLETED)

    async def drain(self) -> None:
        """Until nothing is in flight, including what is added meanwhile."""
        while self._latest:
            await asyncio.wait(set(self._latest.values()))
