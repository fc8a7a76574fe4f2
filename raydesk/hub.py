"""Fan-out in a gateway: store pub/sub channels to the connections this gateway holds.

One pub/sub connection per gateway. A participant's channel is subscribed while at least
one of their connections is here and unsubscribed when the last one leaves, so nothing
outlives a connection; if the gateway itself dies, its store connection closes and the
store drops all its subscriptions (no leaked subscriptions, no leases to expire).

Events are published by the store commit that made them durable, inside the same Lua call,
so each channel carries a conversation's messages in seq order. If the pub/sub connection
breaks, events may have been missed: every connection here is closed with 1012 (reconnect
and sync) rather than left silently behind.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import Callable
from typing import Protocol

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from raydesk import metrics, tracing
from raydesk.store import channel

log = logging.getLogger("raydesk.hub")

CHANNEL_PREFIX_LEN = len(channel(""))


class Subscriber(Protocol):
    def deliver(self, payload: str) -> None: ...

    def restart(self) -> None: ...


class Hub:
    def __init__(self, redis: aioredis.Redis) -> None:
        self._redis = redis
        self._pubsub = redis.pubsub(ignore_subscribe_messages=True)
        self._subscribers: dict[str, set[Subscriber]] = {}
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self.on_broken: Callable[[], None] | None = None

    @property
    def participants(self) -> int:
        return len(self._subscribers)

    async def join(self, participant_id: str, subscriber: Subscriber) -> None:
        """Start delivering ``participant_id``'s events to ``subscriber``. Returns once the
        subscription is active, so anything published afterwards is delivered."""
        async with self._lock:
            group = self._subscribers.setdefault(participant_id, set())
            group.add(subscriber)
            if len(group) == 1:
                try:
                    await self._pubsub.subscribe(channel(participant_id))
                except BaseException:
                    group.discard(subscriber)
                    if not group:
                        del self._subscribers[participant_id]
                    raise
            if self._task is None or self._task.done():
                # A context of its own: not the ids and span of the joining connection.
                self._task = asyncio.get_running_loop().create_task(
                    self._listen(), context=contextvars.Context())

    async def leave(self, participant_id: str, subscriber: Subscriber) -> None:
        async with self._lock:
            group = self._subscribers.get(participant_id)
            if group is None:
                return
            group.discard(subscriber)
            if not group:
                del self._subscribers[participant_id]
                try:
                    await self._pubsub.unsubscribe(channel(participant_id))
                except RedisError:
                    log.warning("unsubscribe of %s failed (connection broken)", participant_id)

    async def _listen(self) -> None:
        while self._subscribers:
            try:
                message = await self._pubsub.get_message(timeout=1.0)
            except (RedisError, OSError):
                metrics.PUBSUB_BREAKS.inc()
                log.warning("pub/sub connection broken; closing %d participants' connections",
                            len(self._subscribers))
                self._restart_all()
                await asyncio.sleep(0.5)
                continue
            if message is None or message.get("type") != "message":
                continue
            participant_id = message["channel"][CHANNEL_PREFIX_LEN:]
            payload, traceparent = tracing.untag(message["data"])
            subscribers = list(self._subscribers.get(participant_id, ()))
            with tracing.deliver_span(payload, traceparent, participant_id, len(subscribers)):
                for subscriber in subscribers:
                    subscriber.deliver(payload)

    def _restart_all(self) -> None:
        for group in list(self._subscribers.values()):
            for subscriber in list(group):
                subscriber.restart()

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
        await self._pubsub.aclose()
