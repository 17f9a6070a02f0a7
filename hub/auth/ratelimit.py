"""Per-client request-rate limits: a token bucket per key, in process memory."""

from __future__ import annotations

import math
import threading
import time

from hub.errors import TooManyRequests


class RateLimiter:
    """``per_minute`` requests per key on average, in bursts of up to ``per_minute`` / 4 (at least 10)."""

    def __init__(self, per_minute: int) -> None:
        self.rate = per_minute / 60.0
        self.burst = max(10.0, per_minute / 4)
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def check(self, key: str) -> None:
        """Take one request from ``key``'s bucket, or raise :class:`TooManyRequests`."""
        if self.rate <= 0:
            return
        now = time.monotonic()
        with self._lock:
            tokens, last = self._buckets.get(key, (self.burst, now))
            tokens = min(self.burst, tokens + (now - last) * self.rate)
            if tokens < 1:
                self._buckets[key] = (tokens, now)
                wait = math.ceil((1 - tokens) / self.rate)
                raise TooManyRequests(f"Too many requests from this client; retry in {wait} s", retry_after=wait)
            self._buckets[key] = (tokens - 1, now)
            if len(self._buckets) > 100_000:  # forget idle keys
                self._buckets = {k: v for k, v in self._buckets.items() if now - v[1] < 600}
