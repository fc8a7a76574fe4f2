"""raydesk.ratelimit: the per-connection token bucket, driven with explicit times."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from raydesk.ratelimit import TokenBucket


def _takes(bucket: TokenBucket, now: float, count: int) -> list[bool]:
    return [bucket.take(now) for _ in range(count)]


def test_a_full_bucket_allows_a_burst_then_refuses() -> None:
    """A new bucket accepts exactly ``burst`` frames at once, then refuses."""
    bucket = TokenBucket(rate=5, burst=20, max_strikes=3, now=100.0)
    assert _takes(bucket, 100.0, 20) == [True] * 20
    assert bucket.take(100.0) is False


def test_tokens_refill_at_the_rate() -> None:
    """After emptying, one token comes back every 1/rate seconds."""
    # rate 4/s and times that are exact binary fractions, so no float rounding creeps in.
    bucket = TokenBucket(rate=4, burst=2, max_strikes=10, now=0.0)
    assert _takes(bucket, 0.0, 2) == [True, True]
    assert bucket.take(0.125) is False   # half a token
    assert bucket.take(0.25) is True     # 0.5 + 0.5 = 1 token
    assert bucket.take(0.25) is False
    assert _takes(bucket, 1.0, 3) == [True, True, False]  # 3 tokens back, capped at 2


def test_refill_is_capped_at_burst() -> None:
    """A long silence refills the bucket to burst, no more."""
    bucket = TokenBucket(rate=10, burst=3, max_strikes=10, now=0.0)
    assert _takes(bucket, 0.0, 3) == [True] * 3
    assert _takes(bucket, 3600.0, 4) == [True, True, True, False]


def test_strikes_count_rejections_and_reset_on_accept() -> None:
    """Each refusal is a strike; max_strikes in a row exhausts; an accepted frame resets."""
    bucket = TokenBucket(rate=1, burst=1, max_strikes=3, now=0.0)
    assert bucket.take(0.0)
    assert not bucket.take(0.0) and bucket.strikes == 1 and not bucket.exhausted
    assert not bucket.take(0.1) and bucket.strikes == 2 and not bucket.exhausted
    assert bucket.take(1.5) and bucket.strikes == 0
    assert _takes(bucket, 1.5, 3) == [False] * 3
    assert bucket.exhausted


def test_fractional_rate() -> None:
    """A rate under one per second works: 0.5/s gives a token every 2 s."""
    bucket = TokenBucket(rate=0.5, burst=1, max_strikes=5, now=10.0)
    assert bucket.take(10.0)
    assert not bucket.take(11.0)
    assert bucket.take(12.0)


@pytest.mark.parametrize("rate", [1.0, 5.0, 50.0])
def test_long_run_throughput_is_the_rate(rate: float) -> None:
    """Offered far faster than the rate for 100 s, it accepts about burst + rate*100."""
    bucket = TokenBucket(rate=rate, burst=10, max_strikes=10**9, now=0.0)
    accepted = sum(bucket.take(i / 1000) for i in range(100_000))
    assert abs(accepted - (10 + rate * 100)) <= 2


@given(times=st.lists(st.floats(min_value=0, max_value=1000, allow_nan=False), max_size=60),
       rate=st.floats(min_value=0.1, max_value=100), burst=st.integers(1, 30))
def test_never_accepts_more_than_burst_plus_rate_times_elapsed(
        times: list[float], rate: float, burst: int) -> None:
    """Over any run, accepted frames never exceed burst + rate * elapsed time."""
    times = sorted(times)
    bucket = TokenBucket(rate=rate, burst=burst, max_strikes=5, now=0.0)
    accepted = 0
    for now in times:
        accepted += bucket.take(now)
        assert accepted <= burst + rate * now + 1e-6
        assert 0 <= bucket.tokens <= burst
