"""The callers' side of the conversation shards: placement, handles and batching.

Every command for a shard that arrives while a call to it is in flight rides in the next
call, so at load one Ray call carries many messages (a Ray call costs ~0.8 ms of CPU).
A shard that dies makes its in-flight commands fail with ``unavailable``; Ray restarts it
and the next call reaches the new instance, which rebuilds its conversations from the store.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from collections.abc import Sequence
from typing import Any

import ray
from ray.exceptions import RayActorError, RayError

from raydesk import tracing
from raydesk.batching import Batcher
from raydesk.errors import RaydeskError, Unavailable
from raydesk.placement import shard_for
from raydesk.schema import ShardCommand

log = logging.getLogger("raydesk.shards")


class ShardClient:
    def __init__(self, shard_names: list[str], namespace: str) -> None:
        self._names = shard_names
        self._namespace = namespace
        self._handles: dict[str, Any] = {}
        self._batchers: dict[str, Batcher[ShardCommand, Any]] = {}

    def shard_of(self, conversation_id: str) -> str:
        return shard_for(conversation_id, self._names)

    def handle(self, name: str) -> Any:
        if name not in self._handles:
            self._handles[name] = ray.get_actor(name, namespace=self._namespace)
        return self._handles[name]

    async def submit(self, command: ShardCommand) -> dict[str, Any]:
        """Run one command on its conversation's shard; raise its error if it failed."""
        if command.trace is None:
            # Batched with others': each command carries its own span to the shard.
            parent = tracing.traceparent()
            if parent is not None:
                command = dataclasses.replace(command, trace=parent)
        name = self.shard_of(command.conversation_id)
        batcher = self._batchers.get(name)
        if batcher is None:
            batcher = Batcher(functools.partial(self._call, name))
            self._batchers[name] = batcher
        result: dict[str, Any] = await batcher.submit(command)
        return result

    async def _call(self, name: str, batch: list[ShardCommand]) -> Sequence[Any]:
        try:
            results: list[Any] = await self.handle(name).handle.remote(batch)
        except RayActorError:
            log.warning("shard %s died or is restarting; %d commands refused", name, len(batch))
            raise Unavailable("the conversation service is restarting, try again") from None
        except RayError:
            log.exception("shard %s call failed", name)
            raise Unavailable("the conversation service is unavailable, try again") from None
        except ValueError:  # the named actor does not exist (yet)
            self._handles.pop(name, None)
            raise Unavailable("the conversation service is starting, try again") from None
        return [r if isinstance(r, RaydeskError) or not isinstance(r, BaseException)
                else Unavailable("internal error") for r in results]
