"""raydesk.placement: rendezvous hashing of conversations onto shards."""

from __future__ import annotations

from collections import Counter

import pytest

from raydesk.placement import shard_for, shard_name

KEYS = [f"conv-{i}" for i in range(10_000)]


def _shards(n: int) -> list[str]:
    return [shard_name("raydesk", i) for i in range(n)]


def test_shard_name() -> None:
    """Shard names are '<namespace>-shard-<index>'."""
    assert shard_name("ns", 3) == "ns-shard-3"


def test_shard_for_is_deterministic_and_order_independent() -> None:
    """The same key and shards always give the same shard, in whatever order they're listed."""
    shards = _shards(5)
    first = [shard_for(k, shards) for k in KEYS[:500]]
    assert [shard_for(k, shards) for k in KEYS[:500]] == first
    assert [shard_for(k, list(reversed(shards))) for k in KEYS[:500]] == first
    assert all(s in shards for s in first)


def test_single_shard_owns_everything() -> None:
    """With one shard, every key goes to it."""
    assert {shard_for(k, ["only"]) for k in KEYS[:100]} == {"only"}


def test_keys_spread_over_all_shards() -> None:
    """10,000 keys spread roughly evenly over 8 shards."""
    counts = Counter(shard_for(k, _shards(8)) for k in KEYS)
    assert set(counts) == set(_shards(8))
    assert min(counts.values()) > 0.7 * len(KEYS) / 8
    assert max(counts.values()) < 1.3 * len(KEYS) / 8


@pytest.mark.parametrize("n", [1, 2, 3, 7, 16])
def test_adding_a_shard_moves_about_one_share_and_only_to_it(n: int) -> None:
    """From n to n+1 shards, about 1/(n+1) of keys move, all of them to the new shard."""
    old, new = _shards(n), _shards(n + 1)
    before = {k: shard_for(k, old) for k in KEYS}
    after = {k: shard_for(k, new) for k in KEYS}
    moved = [k for k in KEYS if before[k] != after[k]]
    assert {after[k] for k in moved} <= {new[-1]}
    share = len(moved) / len(KEYS)
    assert 0.5 / (n + 1) < share < 2 / (n + 1)


def test_removing_a_shard_moves_only_its_keys() -> None:
    """When a shard goes, only the keys it owned move."""
    shards = _shards(6)
    gone = shards[2]
    remaining = [s for s in shards if s != gone]
    for key in KEYS[:2000]:
        before = shard_for(key, shards)
        if before != gone:
            assert shard_for(key, remaining) == before
