"""Per-connection rate limit: a token bucket. Pure; the caller passes the time."""

from __future__ import annotations


class TokenBucket:
    """``rate`` tokens per second up to ``burst``; each accepted frame takes one.

    ``strikes`` counts rejections since the last accepted frame: a client that keeps
    sending while limited reaches ``max_strikes`` and is closed (4429).
    """

    def __init__(self, rate: float, burst: int, max_strikes: int, now: float) -> None:
        self.rate = rate
        self.burst = burst
        self.max_strikes = max_strikes
        self.tokens = float(burst)
        self.strikes = 0
        self._last = now

    def take(self, now: float) -> bool:
        self.tokens = min(self.burst, self.tokens + (now - self._last) * self.rate)
        self._last = now
        if self.tokens >= 1:
            self.tokens -= 1
            self.strikes = 0
            return True
        self.strikes += 1
        return False

    @property
    def exhausted(self) -> bool:
        return self.strikes >= self.max_strikes
