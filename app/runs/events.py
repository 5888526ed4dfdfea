"""Announcing committed events to live subscribers (SSE) through the app's publisher."""

from __future__ import annotations

import logging
from typing import Any, Protocol

from fastapi import Request
from starlette.concurrency import run_in_threadpool

from app.models import RunEvent

log = logging.getLogger(__name__)


class Publisher(Protocol):
    """``app.state.publisher``: the in-process or Redis broker of :mod:`app.live.pubsub`."""

    def publish(self, run_id: int, event_type: str, payload: dict[str, Any]) -> None: ...


def publish_events(
    publisher: Publisher, events: list[RunEvent], payload: dict[str, Any] | None = None
) -> None:
    """Announce committed events (``payload`` replaces the stored one, e.g. a full epoch record)."""
    for event in events:
        body = dict(payload if payload is not None else event.payload)
        body["event_id"] = event.id
        try:
            publisher.publish(event.run_id, event.type, body)
        except Exception:  # subscribers must never break a committed write
            log.exception("publishing %s for run %s failed", event.type, event.run_id)


def publish(request: Request, events: list[RunEvent], payload: dict[str, Any] | None = None) -> None:
    """:func:`publish_events` through the publisher of the request's app."""
    publish_events(request.app.state.publisher, events, payload)


async def publish_from_loop(
    request: Request, events: list[RunEvent], payload: dict[str, Any] | None = None
) -> None:
    """:func:`publish` from the event loop (an ``async`` route): in place for a publisher that does no
    I/O (``blocks = False``: the in-process broker), on the thread pool for one that may wait (Redis)."""
    publisher = request.app.state.publisher
    if getattr(publisher, "blocks", True):
        await run_in_threadpool(publish_events, publisher, events, payload)
    else:
        publish_events(publisher, events, payload)
