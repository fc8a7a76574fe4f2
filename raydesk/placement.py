"""Which shard hosts a conversation: rendezvous (highest random weight) hashing.

When the number of shards changes from n to n+1, only the conversations that the new shard
wins move (about 1/(n+1) of them); the rest stay where they were. Conversations that move
are rebuilt from the store by their new shard, and the store's sequence fence keeps an old
shard that still holds one from writing a stale seq.
"""

from __future__ import annotations

import hashlib


def shard_name(namespace: str, index: int) -> str:
    return f"{namespace}-shard-{index}"


def _weight(key: str, shard: str) -> int:
    digest = hashlib.blake2b(f"{shard}\x00{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def shard_for(key: str, shards: list[str]) -> str:
    """The shard (one of ``shards``, non-empty) that owns ``key``."""
    return max(shards, key=lambda shard: _weight(key, shard))
