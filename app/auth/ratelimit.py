"""A request rate limit per API caller: a token bucket per API token (or per user, for cookie calls).

A caller may send ``API_RATE_LIMIT_BURST`` requests at once, refilled at
``API_RATE_LIMIT_PER_SECOND``; beyond that the API answers 429 with ``Retry-After`` (the SDK waits
and retries). Generous defaults: a training worker sends a few requests per epoch, a dashboard tab
about one a second; the limit is there so that one runaway script or leaked token cannot take the
server from everyone else.

Two implementations of ``acquire(key) -> seconds to wait`` (0.0 = allowed):

- :class:`RateLimiter` (the embedded default): buckets in the process. Buckets that have refilled
  are forgotten first, so the table stays small.
- :class:`RedisRateLimiter` (team mode, ``REDIS_URL`` set): one bucket per caller in Redis, taken
  by a Lua script (atomic, on Redis' own clock), so N web replicas share one budget instead of
  allowing N times the rate. While Redis is unreachable it counts in the process (for
  ``retry_s``, then it tries Redis again), so requests never wait on it.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from app.settings import Settings

log = logging.getLogger(__name__)


class Limiter(Protocol):
    per_second: float
    burst: int

    def acquire(self, key: Hashable) -> float: ...


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


# KEYS[1]: the caller's bucket (a hash: tokens, at); ARGV: rate per second, burst, TTL in ms, and
# optionally "now" in seconds (tests); otherwise Redis' TIME, one clock for every replica.
# Returns the seconds to wait as a string (Lua numbers come back from Redis as integers).
TAKE_TOKEN = """
local now
if ARGV[4] then
  now = tonumber(ARGV[4])
else
  local t = redis.call('TIME')
  now = tonumber(t[1]) + tonumber(t[2]) / 1000000
end
local rate, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local held = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens, at = tonumber(held[1]), tonumber(held[2])
if tokens == nil or at == nil then
  tokens, at = burst, now
end
tokens = math.min(burst, tokens + math.max(0, now - at) * rate)
local wait = 0
if tokens >= 1 then
  tokens = tokens - 1
else
  wait = (1 - tokens) / rate
end
redis.call('HSET', KEYS[1], 'tokens', string.format('%.17g', tokens), 'at', string.format('%.17g', now))
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return string.format('%.17g', wait)
"""


class RedisRateLimiter:
    """Token buckets shared by every process that uses the same Redis and ``prefix``."""

    def __init__(
        self,
        url: str,
        per_second: float,
        burst: int,
        *,
        prefix: str = "collapsewatch",
        clock: Callable[[], float] | None = None,
        retry_s: float = 5.0,
        timeout_s: float = 0.5,
    ) -> None:
        if per_second <= 0 or burst < 1:
            raise ValueError("per_second must be > 0 and burst >= 1")
        import redis

        self.per_second, self.burst = per_second, burst
        self.prefix = f"{prefix}:ratelimit"
        self.retry_s = retry_s
        self._clock = clock
        # a full bucket is the same as no bucket: let Redis forget it once it would have refilled
        self._ttl_ms = math.ceil(burst / per_second * 1000) + 1000
        self._redis = redis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)
        self._take: Any = self._redis.register_script(TAKE_TOKEN)
        self._local = RateLimiter(per_second, burst)  # while Redis is unreachable
        self._down_until = 0.0

    def key(self, key: Hashable) -> str:
        parts = key if isinstance(key, tuple) else (key,)
        return ":".join([self.prefix, *(str(part) for part in parts)])

    def acquire(self, key: Hashable) -> float:
        """Take one request from ``key``'s shared bucket: 0.0 if allowed, else the seconds to wait."""
        if time.monotonic() >= self._down_until:
            args: list[Any] = [repr(self.per_second), self.burst, self._ttl_ms]
            if self._clock is not None:
                args.append(repr(self._clock()))
            try:
                return float(self._take(keys=[self.key(key)], args=args))
            except Exception as exc:  # Redis down or restarting: never fail or stall the request
                self._down_until = time.monotonic() + self.retry_s
                log.warning("rate limit: Redis unavailable (%s); counting in this process for now", exc)
        return self._local.acquire(key)

    def close(self) -> None:
        self._redis.close()


def make_rate_limiter(settings: Settings) -> Limiter | None:
    """None (no limit) for ``API_RATE_LIMIT_PER_SECOND=0``; shared buckets in Redis when
    ``REDIS_URL`` is set (team mode); buckets in this process otherwise (embedded)."""
    rate, burst = settings.api_rate_limit_per_second, settings.api_rate_limit_burst
    if not rate:
        return None
    if settings.redis_url:
        return RedisRateLimiter(settings.redis_url, rate, burst, prefix=settings.redis_prefix)
    return RateLimiter(rate, burst)
