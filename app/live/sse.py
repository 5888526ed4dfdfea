"""Server-sent event streams: replay from ``run_events`` after ``Last-Event-ID``, then live events.

Per-run stream (``GET /api/v1/runs/{id}/events``):

- ``event: epoch`` carries the epoch record (``EpochPublic``: the §5 record plus ``epoch`` and
  ``recorded_at``), ``event: status`` the run's status (``status``, ``attempt``, ``cancel_requested``,
  ``error``), ``event: log`` a log line; every event has ``id:`` = its ``run_events`` id.
- With ``Last-Event-ID`` (header, or ``?last_event_id=`` for clients without EventSource) every event
  after that id is replayed from the database first (an epoch is sent as currently stored), then
  live events follow, de-duplicated by id. Without it, the stream starts with one ``status`` snapshot
  (id = the run's newest event id, so a reconnect resumes from there) and continues live.
- The stream ends once the run is terminal and everything was sent; a reconnect after that gets
  ``204 No Content``, which tells EventSource to stop reconnecting.
- A comment line (``: keep-alive``) goes out every ``keepalive_s`` seconds of silence.

All-runs stream (``GET /api/v1/events``): ``event: status`` for every run (``run_id`` added to the
data), for live status badges; same replay rules; never ends by itself.

Framing and the response class are FastAPI's (``fastapi.sse.format_sse_event``,
``EventSourceResponse``). Kept here, with the reason: the generator, and so its keep-alive timer.
FastAPI's generator endpoints (``response_class=EventSourceResponse`` + ``yield``) ping every 15 s
from a private module constant and cannot answer 404 or 204 before the stream starts; ours ends
by itself once the run is terminal, answers a finished resume with 204, re-reads the database
when the subscription lagged, and lets tests and the fuzzer shorten the keep-alive
(``app.state.sse_keepalive_s``).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from typing import Any

from fastapi.sse import format_sse_event
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from app.db import Database
from app.live.pubsub import ALL_RUNS, Event, InProcessBroker
from app.models import Epoch, Run, RunEvent
from app.series.epochs import epoch_public
from collapsewatch.contract import TERMINAL_STATUSES

KEEPALIVE_S = 15.0
REPLAY_BATCH = 500
RETRY_MS = 2000


def format_event(event: Event, *, with_run: bool = False) -> bytes:
    """One SSE frame: ``event:`` the type, ``data:`` the JSON payload, ``id:`` the run_events id."""
    data = event.data | ({"run_id": event.run_id} if with_run else {})
    body = json.dumps(data, separators=(",", ":"), allow_nan=False)
    return format_sse_event(
        data_str=body, event=event.type, id=str(event.id) if event.id is not None else None
    )


RETRY = format_sse_event(retry=RETRY_MS)  # how long EventSource waits before it reconnects
KEEPALIVE = format_sse_event(comment="keep-alive")


def _epoch_payloads(*, session: Session, run_id: int, epochs: set[int]) -> dict[int, dict[str, Any]]:
    if not epochs:
        return {}
    rows = session.scalars(select(Epoch).where(Epoch.run_id == run_id, Epoch.epoch.in_(epochs)))
    return {row.epoch: epoch_public(row).model_dump(mode="json", warnings=False) for row in rows}


def replay(*, session: Session, run_id: int, after_id: int, limit: int = REPLAY_BATCH) -> list[Event]:
    """Up to ``limit`` stored events of one run after ``after_id``, in id order, as they go out."""
    rows = session.scalars(
        select(RunEvent)
        .where(RunEvent.run_id == run_id, RunEvent.id > after_id)
        .order_by(RunEvent.id)
        .limit(limit)
    ).all()
    wanted = {int(r.payload["epoch"]) for r in rows if r.type == "epoch" and "epoch" in r.payload}
    epochs = _epoch_payloads(session=session, run_id=run_id, epochs=wanted)
    out: list[Event] = []
    for row in rows:
        payload = dict(row.payload)
        if row.type == "epoch":
            stored = epochs.get(int(payload.get("epoch", -1)))
            if stored is None:  # the epoch row is gone; the notice alone is still an event
                stored = payload
            payload = dict(stored)
        out.append(Event(run_id, row.type, payload | {"event_id": row.id}))
    return out


def replay_status(*, session: Session, after_id: int, limit: int = REPLAY_BATCH) -> list[Event]:
    """Up to ``limit`` status events of every run after ``after_id``, in id order."""
    rows = session.scalars(
        select(RunEvent)
        .where(RunEvent.type == "status", RunEvent.id > after_id)
        .order_by(RunEvent.id)
        .limit(limit)
    ).all()
    return [Event(r.run_id, r.type, dict(r.payload) | {"event_id": r.id}) for r in rows]


def run_snapshot(*, session: Session, run_id: int) -> tuple[Run | None, int]:
    """The run (None if unknown) and its newest event id (0 if none)."""
    run = session.get(Run, run_id)
    newest = session.scalar(select(func.max(RunEvent.id)).where(RunEvent.run_id == run_id))
    return run, int(newest or 0)


def newest_event_id(*, session: Session) -> int:
    return int(session.scalar(select(func.max(RunEvent.id))) or 0)


def _status_snapshot(run: Run, newest: int) -> Event:
    payload = {
        "status": run.status,
        "attempt": run.attempt,
        "cancel_requested": run.cancel_requested,
        "error": run.error,
        "event_id": newest,
    }
    return Event(run.id, "status", payload)


def _is_terminal(event: Event) -> bool:
    return event.type == "status" and event.payload.get("status") in TERMINAL_STATUSES


class _Stream:
    """Shared loop of both streams: replay, then live with de-duplication and lag recovery."""

    def __init__(
        self,
        db: Database,
        sub: Any,
        fetch: Callable[[Session, int], list[Event]],
        *,
        last_id: int,
        keepalive_s: float,
    ) -> None:
        self.db, self.sub, self.fetch = db, sub, fetch
        self.last_id, self.keepalive_s = last_id, keepalive_s

    def _read(self, after_id: int) -> list[Event]:
        with self.db.session(write=False) as session:
            return self.fetch(session, after_id)

    async def catch_up(self) -> list[Event]:
        """Everything stored after ``last_id`` (batch by batch)."""
        out: list[Event] = []
        while True:
            batch = await run_in_threadpool(self._read, self.last_id)
            out.extend(batch)
            if batch:
                self.last_id = max(self.last_id, max(e.id or 0 for e in batch))
            if len(batch) < REPLAY_BATCH:
                return out

    async def live(self) -> AsyncIterator[Event | None]:
        """Live events (``None`` = time for a keep-alive)."""
        while True:
            if self.sub.lagged:
                self.sub.lagged = False
                self.sub.drain()
                for event in await self.catch_up():
                    yield event
                continue
            try:
                event = await asyncio.wait_for(self.sub.queue.get(), self.keepalive_s)
            except TimeoutError:
                yield None
                continue
            if event.id is not None and event.id <= self.last_id:
                continue  # already replayed
            self.last_id = max(self.last_id, event.id or 0)
            yield event


async def run_events(
    db: Database,
    broker: InProcessBroker,
    *,
    run: Run,
    newest: int,
    last_event_id: int | None,
    keepalive_s: float = KEEPALIVE_S,
) -> AsyncGenerator[bytes, None]:
    """The per-run stream (the route checked that the run exists and computed ``newest``)."""
    async with broker.subscribe(run.id) as sub:
        stream = _Stream(
            db,
            sub,
            lambda s, after: replay(session=s, run_id=run.id, after_id=after),
            last_id=newest if last_event_id is None else last_event_id,
            keepalive_s=keepalive_s,
        )
        yield RETRY
        if last_event_id is None:
            yield format_event(_status_snapshot(run, newest))
        for event in await stream.catch_up():
            yield format_event(event)
        if run.status in TERMINAL_STATUSES:
            return  # terminal before we subscribed: everything up to now was sent
        async for item in stream.live():
            if item is None:
                yield KEEPALIVE
                continue
            yield format_event(item)
            if _is_terminal(item) and item.id == stream.last_id:
                return


async def all_runs_events(
    db: Database, broker: InProcessBroker, *, last_event_id: int | None, keepalive_s: float = KEEPALIVE_S
) -> AsyncGenerator[bytes, None]:
    """Status changes of every run, forever."""
    async with broker.subscribe(ALL_RUNS) as sub:
        if last_event_id is None:
            last_event_id = await run_in_threadpool(_newest, db)
        stream = _Stream(
            db,
            sub,
            lambda s, after: replay_status(session=s, after_id=after),
            last_id=last_event_id,
            keepalive_s=keepalive_s,
        )
        yield RETRY
        for event in await stream.catch_up():
            yield format_event(event, with_run=True)
        async for item in stream.live():
            yield KEEPALIVE if item is None else format_event(item, with_run=True)


def _newest(db: Database) -> int:
    with db.session(write=False) as session:
        return newest_event_id(session=session)
