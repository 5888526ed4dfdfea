"""A request rate limit per API caller: a token bucket per API token (or per user, for cookie calls).

A caller may send ``API_RATE_LIMIT_BURST`` requests at once, refilled at
``API_RATE_LIMIT_PER_SECOND``; beyond that the API answers 429 with ``Retry-After`` (the SDK waits
and retries). Generous defaults: a training worker sends a few requests per epoch, a dashboard tab
about one a second; the limit is there so that one runaway script or leaked token cannot take the
server from everyone else. The buckets live in the process: behind N replicas a caller gets N times
the rate. Buckets that have refilled are forgotten first, so the table stays small.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable


class RateLimiter:
    """Thread-safe token buckets keyed by caller."""

    def __init__(
        self,
        per_second: float,
        burst: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = 10_000,
    ) -> None:
        if per_second <= 0 or burst < 1:
            raise ValueError("per_second must be > 0 and burst >= 1")
        self.per_second, self.burst, self.max_keys = per_second, burst, max_keys
        self._clock = clock
        self._buckets: dict[Hashable, tuple[float, float]] = {}  # key -> (tokens, at)
        self._lock = threading.Lock()

    def acquire(self, key: Hashable) -> float:
        """Take one request from ``key``'s bucket: 0.0 if allowed, else the seconds to wait."""
        with self._lock:
            now = self._clock()
            tokens = self._tokens(key, now)
            if tokens >= 1.0:
                self._buckets[key] = (tokens - 1.0, now)
                if len(self._buckets) > self.max_keys:
                    self._forget(now)
                return 0.0
            self._buckets[key] = (tokens, now)
            return (1.0 - tokens) / self.per_second

    def _tokens(self, key: Hashable, now: float) -> float:
        held = self._buckets.get(key)
        if held is None:
            return float(self.burst)
        tokens, at = held
        return min(float(self.burst), tokens + (now - at) * self.per_second)

    def _forget(self, now: float) -> None:
        """Drop the buckets that are full again (forgetting them changes nothing), then, if the
        table is still too big, the least recently used half."""
        full = [key for key in self._buckets if self._tokens(key, now) >= self.burst]
        for key in full:
            del self._buckets[key]
        if len(self._buckets) > self.max_keys:
            by_age = sorted(self._buckets, key=lambda key: self._buckets[key][1])
            for key in by_age[: len(by_age) // 2]:
                del self._buckets[key]

    def __len__(self) -> int:
        return len(self._buckets)
