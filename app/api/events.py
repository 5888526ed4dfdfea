"""SSE streams: ``GET /api/v1/runs/{id}/events`` and ``GET /api/v1/events`` (see ``app.live.sse``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.responses import StreamingResponse
from fastapi.sse import EventSourceResponse
from starlette.concurrency import run_in_threadpool

from app.api.access import CanReadRunDb, UserActorDep, guarded_frames
from app.db import Database
from app.deps import RunId
from app.errors import NotFound
from app.live import sse
from app.live.pubsub import InProcessBroker
from app.models import Run
from collapsewatch.contract import TERMINAL_STATUSES

router = APIRouter(prefix="/api/v1", tags=["events"])

MAX_EVENT_ID = 2**63 - 1
HeaderId = Annotated[
    int | None, Header(alias="Last-Event-ID", ge=0, le=MAX_EVENT_ID, description="resume after this id")
]
QueryId = Annotated[
    int | None, Query(ge=0, le=MAX_EVENT_ID, description="resume after this id (clients without EventSource)")
]
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
# The routes return FastAPI's EventSourceResponse themselves (after their 404/204 checks); declaring
# it as ``response_class`` would make FastAPI treat them as generator endpoints (app/live/sse.py).


def _snapshot(db: Database, run_id: int) -> tuple[Run | None, int]:
    with db.session(write=False) as session:
        return sse.run_snapshot(session=session, run_id=run_id)


def _keepalive(request: Request) -> float:
    return float(getattr(request.app.state, "sse_keepalive_s", sse.KEEPALIVE_S))


@router.get("/runs/{run_id}/events", response_class=StreamingResponse)
async def run_events(
    run_id: RunId,
    request: Request,
    actor: UserActorDep,
    _can: CanReadRunDb,
    last_event_id_header: HeaderId = None,
    last_event_id: QueryId = None,
) -> Response:
    """New epochs (``event: epoch``) and status changes (``event: status``) of one run, as SSE.

    ``Last-Event-ID`` (or ``?last_event_id=``; the header wins) replays every event after that id
    first. The stream ends when the run is finished; a resume after the end gets 204.
    """
    db: Database = request.app.state.db
    broker: InProcessBroker = request.app.state.publisher
    run, newest = await run_in_threadpool(_snapshot, db, run_id)
    if run is None:
        raise NotFound(f"run {run_id} does not exist")
    resume = last_event_id_header if last_event_id_header is not None else last_event_id
    if resume is not None and resume >= newest and run.status in TERMINAL_STATUSES:
        return Response(status_code=204)
    stream = sse.run_events(
        db, broker, run=run, newest=newest, last_event_id=resume, keepalive_s=_keepalive(request)
    )
    return EventSourceResponse(guarded_frames(request, actor, stream, run_id=run_id), headers=SSE_HEADERS)


@router.get("/events", response_class=StreamingResponse)
async def all_events(
    request: Request,
    actor: UserActorDep,
    last_event_id_header: HeaderId = None,
    last_event_id: QueryId = None,
) -> Response:
    """Status changes of the runs the caller may read (``event: status``, ``run_id`` in the data), as SSE."""
    db: Database = request.app.state.db
    broker: InProcessBroker = request.app.state.publisher
    resume = last_event_id_header if last_event_id_header is not None else last_event_id
    stream = sse.all_runs_events(db, broker, last_event_id=resume, keepalive_s=_keepalive(request))
    return EventSourceResponse(guarded_frames(request, actor, stream), headers=SSE_HEADERS)
