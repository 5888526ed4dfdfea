"""Ordered, non-blocking delivery of one run's writes by a background thread (see
:mod:`collapsewatch.sdk.spool`)."""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Protocol

from collapsewatch.sdk.spool import Entry, Spool

log = logging.getLogger("collapsewatch.outbox")


class Sink(Protocol):
    """Where a run's writes go: an :class:`Outbox` online, the run's directory offline
    (:class:`collapsewatch.sdk.offline.OfflineJournal`)."""

    @property
    def pending(self) -> int: ...
    def put(self, entry: Entry) -> None: ...
    def flush(self, timeout: float | None) -> bool: ...
    def close(self, timeout: float | None) -> bool: ...


def backoff_delay(failures: int, base: float, cap: float) -> float:
    """Exponential backoff with "equal jitter": ``min(cap, base * 2**(failures-1))`` times U(0.5, 1)."""
    raw = min(cap, base * (2 ** max(0, failures - 1)))
    return raw * random.uniform(0.5, 1.0)


class Outbox:
    """Ordered, non-blocking delivery of one run's writes by a background thread.

    ``put`` never touches the network: it queues the entry in memory, or appends it to the spool when
    earlier writes are already waiting there (so order is kept). ``send`` must raise one of
    ``retryable`` when the server is unreachable; any other exception means the server refused the
    write, which is then handed to ``on_rejected`` and dropped. ``tick`` (if given) is called from the
    thread every ``tick_interval`` seconds (the run flushes its buffered scalars with it).
    """

    def __init__(
        self,
        send: Callable[[Entry], None],
        spool: Spool,
        *,
        retryable: tuple[type[BaseException], ...],
        on_rejected: Callable[[Entry, Exception], None],
        backoff: float = 0.5,
        backoff_max: float = 10.0,
        tick: Callable[[], None] | None = None,
        tick_interval: float = 2.0,
        name: str = "collapsewatch-outbox",
    ) -> None:
        self._send = send
        self.spool = spool
        self._retryable = retryable
        self._on_rejected = on_rejected
        self._backoff = backoff
        self._backoff_max = backoff_max
        self._tick = tick
        self._tick_interval = tick_interval
        self._queue: deque[Entry] = deque()
        self._inflight = False
        self._failures = 0
        self._retry_at = 0.0
        self._abandon = False
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    @property
    def pending(self) -> int:
        """Writes not yet delivered (in memory, in flight or spooled)."""
        with self._cond:
            return len(self._queue) + len(self.spool) + int(self._inflight)

    def put(self, entry: Entry) -> None:
        with self._cond:
            if self._abandon:
                self.spool.append(entry)  # the thread is gone: keep it for a later replay
            elif len(self.spool):
                self.spool.append(entry)
            else:
                self._queue.append(entry)
            self._cond.notify_all()

    def flush(self, timeout: float | None) -> bool:
        """Wait until everything is delivered (True) or ``timeout`` seconds pass (False).

        Spooled writes are retried at once rather than after the current backoff."""
        with self._cond:
            self._retry_at = 0.0
            self._cond.notify_all()
            return self._cond.wait_for(self._idle, timeout=timeout)

    def close(self, timeout: float | None) -> bool:
        """Flush (bounded by ``timeout``), stop the thread and release the spool. True if nothing is left;
        otherwise the rest stays in the spool file for :func:`replay_file`."""
        done = self.flush(timeout)
        with self._cond:
            self._abandon = True
            self._cond.notify_all()
        self._thread.join()
        with self._cond:
            while self._queue:  # only non-empty if the thread stopped between a put and its send
                self.spool.append(self._queue.popleft())
            left = len(self.spool)
            self.spool.release()
        if left:
            log.warning(
                "%d undelivered write(s) left in %s; they are re-sent by Client.flush_spool()",
                left,
                self.spool.path,
            )
        return done and not left

    def _idle(self) -> bool:
        return not self._queue and not self._inflight and not len(self.spool)

    def _next(self) -> tuple[Entry | None, bool, float]:
        """Under the lock: the next entry, whether it is from the spool, and else how long to wait."""
        now = time.monotonic()
        if len(self.spool):
            if now >= self._retry_at:
                return self.spool.peek(), True, 0.0
            return None, False, self._retry_at - now
        if self._queue:
            return self._queue.popleft(), False, 0.0
        return None, False, self._tick_interval if self._tick else 3600.0

    def _loop(self) -> None:
        next_tick = time.monotonic() + self._tick_interval
        while True:
            if self._tick is not None and time.monotonic() >= next_tick:
                next_tick = time.monotonic() + self._tick_interval
                try:
                    self._tick()
                except Exception:  # a bug in the tick must not kill delivery
                    log.exception("periodic flush failed")
            with self._cond:
                if self._abandon:
                    return
                entry, from_spool, wait = self._next()
                if entry is None:
                    if self._tick is not None:
                        wait = max(0.0, min(wait, next_tick - time.monotonic()))
                    self._cond.notify_all()
                    self._cond.wait(timeout=wait)
                    continue
                self._inflight = not from_spool
            self._deliver(entry, from_spool)

    def _deliver(self, entry: Entry, from_spool: bool) -> None:
        try:
            self._send(entry)
        except self._retryable as exc:
            with self._cond:
                if not from_spool:  # keep the order: this write, then everything queued after it
                    self.spool.append(entry)
                    while self._queue:
                        self.spool.append(self._queue.popleft())
                    self._inflight = False
                self._failures += 1
                delay = backoff_delay(self._failures, self._backoff, self._backoff_max)
                self._retry_at = time.monotonic() + delay
                log.info(
                    "server unreachable (%s); %d write(s) spooled, retrying in %.1fs",
                    exc,
                    len(self.spool),
                    delay,
                )
                self._cond.notify_all()
            return
        except Exception as exc:
            try:
                self._on_rejected(entry, exc)
            except Exception:  # reporting must never stop delivery
                log.exception("on_rejected failed")
        with self._cond:
            self._failures = 0
            if from_spool:
                self.spool.pop()
            self._inflight = False
            self._cond.notify_all()
