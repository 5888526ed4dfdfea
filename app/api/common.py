"""After-commit side effects shared by the routers: publish events, enqueue jobs."""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from typing import Annotated, Any, cast

from fastapi import Path, Request, Response
from pydantic import BaseModel

from app.db import Database
from app.models import RunEvent
from app.settings import Settings

log = logging.getLogger(__name__)


def publish(request: Request, events: list[RunEvent], payload: dict[str, Any] | None = None) -> None:
    """Announce committed events (``payload`` replaces the stored one, e.g. a full epoch record)."""
    publisher = request.app.state.publisher
    for event in events:
        body = dict(payload if payload is not None else event.payload)
        body["event_id"] = event.id
        try:
            publisher.publish(event.run_id, event.type, body)
        except Exception:  # subscribers must never break a committed write
            log.exception("publishing %s for run %s failed", event.type, event.run_id)


def model_response(model: BaseModel) -> Response:
    """``model`` as the JSON body, serialised on the route's own thread.

    FastAPI re-validates what a sync route returns on a second trip to the thread pool
    (``serialize_response``); under load every trip waits for the GIL. The ingestion routes that
    workers call every epoch return their already-validated model this way instead; their
    ``response_model`` still documents the body.
    """
    return Response(model.model_dump_json(), media_type="application/json")


def enqueue(request: Request, run_ids: list[int]) -> None:
    """Send committed job runs to the queue; a failure is logged (the sweeper re-sends them)."""
    for run_id in run_ids:
        try:
            request.app.state.enqueue(run_id)
        except Exception:
            log.exception("could not enqueue run %s; the sweeper will re-send it", run_id)


def default_enqueue(settings: Settings, db: Database) -> Callable[[int], object]:
    """``app.state.enqueue`` by default: ``app.queue`` (imported on first use), else a warning."""
    sender: Callable[[int], object] | None = None

    def enqueue_run(run_id: int) -> object:
        nonlocal sender
        if sender is None:
            sender = _queue_sender(settings, db)
        return sender(run_id)

    return enqueue_run


def _queue_sender(settings: Settings, db: Database) -> Callable[[int], object]:
    try:
        queue = importlib.import_module("app.queue")
    except ModuleNotFoundError as exc:
        if exc.name != "app.queue":
            raise
        return _no_queue
    if hasattr(queue, "enqueue_run"):
        return cast(Callable[[int], object], queue.enqueue_run)
    job_queue = queue.JobQueue(settings.broker_url, queue_prefix=settings.queue_prefix)
    return cast(Callable[[int], object], queue.make_enqueue(job_queue, database=db))


def _no_queue(run_id: int) -> None:
    log.warning("no queue configured (app.queue missing); run %s stays queued", run_id)


MAX_ID = 2**31 - 1
RunId = Annotated[int, Path(ge=1, le=MAX_ID, description="run id")]
