"""Live events: the ``Publisher`` the API calls after each commit, and subscriptions for SSE streams.

Two brokers implement :class:`app.events.Publisher` plus :meth:`subscribe`:

- :class:`InProcessBroker` (embedded mode): ``publish`` may be called from any thread (sync routes run
  in a threadpool); each subscriber owns an ``asyncio.Queue`` filled with ``call_soon_threadsafe`` on
  the subscriber's own event loop.
- :class:`RedisBroker` (``REDIS_URL`` set): ``publish`` sends JSON with Redis ``PUBLISH`` on
  ``collapsewatch:run:{id}`` (every event) and ``collapsewatch:runs`` (status events, for the runs
  list); one ``redis.asyncio`` listener per process fans the messages out to local subscribers.
  While Redis is unreachable, ``publish`` fails fast and delivers to local subscribers only.

The database stays the source of truth: events carry their ``run_events`` id (``payload["event_id"]``),
and a subscriber that fell behind (full queue, Redis reconnect) is flagged ``lagged`` so that the SSE
stream re-reads what it missed from the database instead of silently skipping it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

CHANNEL_PREFIX = "collapsewatch"
ALL_RUNS = 0  # subscription key for the all-runs status stream (run ids start at 1)
QUEUE_SIZE = 1000


@dataclass(frozen=True, slots=True)
class Event:
    run_id: int
    type: str
    payload: dict[str, Any]

    @property
    def id(self) -> int | None:
        value = self.payload.get("event_id")
        return value if isinstance(value, int) else None

    @property
    def data(self) -> dict[str, Any]:
        """The payload without the event id (that goes on the SSE ``id:`` line)."""
        return {k: v for k, v in self.payload.items() if k != "event_id"}


@dataclass(eq=False)
class Subscription:
    """One subscriber's queue on its own event loop."""

    key: int
    loop: asyncio.AbstractEventLoop
    queue: asyncio.Queue[Event] = field(default_factory=lambda: asyncio.Queue(QUEUE_SIZE))
    lagged: bool = False

    def _put(self, event: Event) -> None:
        try:
            self.queue.put_nowait(event)
        except asyncio.QueueFull:
            self.lagged = True

    def drain(self) -> None:
        while not self.queue.empty():
            self.queue.get_nowait()


class _Hub:
    """Thread-safe registry of local subscriptions and the fan-out to them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._subs: dict[int, set[Subscription]] = {}

    def add(self, sub: Subscription) -> None:
        with self._lock:
            self._subs.setdefault(sub.key, set()).add(sub)

    def remove(self, sub: Subscription) -> None:
        with self._lock:
            subs = self._subs.get(sub.key)
            if subs is not None:
                subs.discard(sub)
                if not subs:
                    del self._subs[sub.key]

    def deliver(self, key: int, event: Event) -> None:
        with self._lock:
            targets = list(self._subs.get(key, ()))
        for sub in targets:
            try:
                sub.loop.call_soon_threadsafe(sub._put, event)
            except RuntimeError:  # the subscriber's loop is closed: it is gone
                self.remove(sub)

    def mark_all_lagged(self) -> None:
        with self._lock:
            targets = [s for subs in self._subs.values() for s in subs]
        for sub in targets:
            sub.lagged = True

    def count(self) -> int:
        with self._lock:
            return sum(len(s) for s in self._subs.values())


class InProcessBroker:
    """Fan-out inside one process (the embedded default)."""

    blocks = False  # publish does no I/O: callable from the event loop (app.runs.events.publish_from_loop)

    def __init__(self) -> None:
        self.hub = _Hub()

    def publish(self, run_id: int, event_type: str, payload: dict[str, Any]) -> None:
        event = Event(run_id, event_type, payload)
        self.hub.deliver(run_id, event)
        if event_type == "status":
            self.hub.deliver(ALL_RUNS, event)

    @contextlib.asynccontextmanager
    async def subscribe(self, run_id: int = ALL_RUNS) -> AsyncIterator[Subscription]:
        """Events of ``run_id`` (or status events of every run for ``ALL_RUNS``) until the block exits."""
        sub = Subscription(run_id, asyncio.get_running_loop())
        self.hub.add(sub)
        try:
            yield sub
        finally:
            self.hub.remove(sub)

    async def aclose(self) -> None:
        return None


def encode(event: Event) -> str:
    return json.dumps({"run_id": event.run_id, "type": event.type, "payload": event.payload})


def decode(raw: str | bytes) -> Event:
    data = json.loads(raw)
    return Event(int(data["run_id"]), str(data["type"]), dict(data["payload"]))


class RedisBroker(InProcessBroker):
    """Redis pub/sub across processes; local fan-out through the in-process hub."""

    blocks = True  # publish waits for Redis

    def __init__(
        self,
        url: str,
        *,
        prefix: str = CHANNEL_PREFIX,
        reconnect_s: float = 1.0,
        ready_timeout_s: float = 5.0,
        retry_s: float = 5.0,
    ) -> None:
        super().__init__()
        import redis

        self.url = url
        self.prefix = prefix
        self.retry_s = retry_s
        self._down_until = 0.0
        self.all_runs_channel = f"{prefix}:runs"
        self.reconnect_s = reconnect_s
        self.ready_timeout_s = ready_timeout_s
        self._sync = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=1)
        self._listener: asyncio.Task[None] | None = None
        self._ready: asyncio.Event | None = None

    def run_channel(self, run_id: int | str) -> str:
        return f"{self.prefix}:run:{run_id}"

    def publish(self, run_id: int, event_type: str, payload: dict[str, Any]) -> None:
        """Publish to Redis; while Redis is unreachable (and for ``retry_s`` after a failure, so
        that writes never wait on it) deliver to this process's subscribers directly. Streams in
        other processes re-read what they missed from the database when their listener reconnects."""
        event = Event(run_id, event_type, payload)
        if time.monotonic() >= self._down_until:
            try:
                with self._sync.pipeline(transaction=False) as pipe:
                    pipe.publish(self.run_channel(run_id), encode(event))
                    if event_type == "status":
                        pipe.publish(self.all_runs_channel, encode(event))
                    pipe.execute()
                return
            except Exception:
                self._down_until = time.monotonic() + self.retry_s
                log.warning("could not publish %s for run %s to Redis", event_type, run_id, exc_info=True)
        super().publish(run_id, event_type, payload)

    @contextlib.asynccontextmanager
    async def subscribe(self, run_id: int = ALL_RUNS) -> AsyncIterator[Subscription]:
        ready = self._ensure_listener()
        async with super().subscribe(run_id) as sub:
            try:  # once Redis confirmed the subscription, nothing published from now on is missed
                await asyncio.wait_for(ready.wait(), self.ready_timeout_s)
            except TimeoutError:
                sub.lagged = True  # Redis is unreachable: the stream falls back to re-reading the DB
            yield sub

    def _ensure_listener(self) -> asyncio.Event:
        loop = asyncio.get_running_loop()
        if self._listener is None or self._listener.done() or self._listener.get_loop() is not loop:
            self._ready = asyncio.Event()
            self._listener = loop.create_task(self._listen(self._ready), name="collapsewatch-redis")
        assert self._ready is not None
        return self._ready

    async def _listen(self, ready: asyncio.Event) -> None:
        import redis.asyncio as aioredis

        reconnected = False
        while True:
            client = aioredis.Redis.from_url(self.url, socket_connect_timeout=5)
            pubsub = client.pubsub()
            try:
                await pubsub.psubscribe(self.run_channel("*"))
                await pubsub.subscribe(self.all_runs_channel)
                confirmations = 0
                async for message in pubsub.listen():
                    kind = message.get("type")
                    if kind in ("subscribe", "psubscribe"):
                        confirmations += 1
                        if confirmations == 2:
                            ready.set()
                            if reconnected:  # events published meanwhile: re-read them
                                self.hub.mark_all_lagged()
                    elif kind in ("message", "pmessage"):
                        self._dispatch(message)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("Redis listener lost its connection; reconnecting", exc_info=True)
                ready.clear()
                reconnected = True
                self.hub.mark_all_lagged()  # streams re-read what they missed from the database
                await asyncio.sleep(self.reconnect_s)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
                    await client.aclose()

    def _dispatch(self, message: dict[str, Any]) -> None:
        channel = message["channel"]
        channel = channel.decode() if isinstance(channel, bytes) else channel
        try:
            event = decode(message["data"])
        except (ValueError, KeyError, TypeError):
            log.warning("ignoring a malformed message on %s", channel)
            return
        self.hub.deliver(ALL_RUNS if channel == self.all_runs_channel else event.run_id, event)

    async def aclose(self) -> None:
        if self._listener is not None and not self._listener.done():
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._listener
        self._sync.close()


Broker = InProcessBroker


def make_broker(redis_url: str | None, *, prefix: str = CHANNEL_PREFIX) -> InProcessBroker:
    """Redis pub/sub when ``REDIS_URL`` is set (channels ``{prefix}:run:{id}`` and ``{prefix}:runs``),
    in-process otherwise."""
    return RedisBroker(redis_url, prefix=prefix) if redis_url else InProcessBroker()
