"""Epoch records (idempotent PUT with attempt fencing), scalar metric batches, epoch listing."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query, Request, Response
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from app.api.access import CanReadRun, IngestSession
from app.api.bodies import metric_columns
from app.api.common import model_response
from app.api.export import download
from app.api.fast_body import FastBodyRoute
from app.deps import RunId, SessionDep
from app.driver_pool import AsyncDriverPool
from app.loop_sqlite import MAX_BODY_BYTES as MAX_LOOP_BODY_BYTES
from app.loop_sqlite import LoopSqlite
from app.models import RunEvent, utcnow
from app.runs import store
from app.runs.events import publish, publish_from_loop
from app.series import epoch_pg, epoch_sqlite, epochs, metrics, metrics_sqlite
from app.series.chunks import as_batch
from app.series.epochs import MAX_EPOCH
from collapsewatch.contract import EpochIn, EpochPublic, MetricBatchIn, MetricBatchPublic

# ingestion bodies: validated from their bytes in one pass when valid (app.api.fast_body)
router = APIRouter(prefix="/api/v1", tags=["ingestion"], route_class=FastBodyRoute)
EpochPath = Annotated[int, Path(ge=0, le=MAX_EPOCH, description="epoch number, from 0")]


@router.put("/runs/{run_id}/epochs/{epoch}", response_model=EpochPublic)
async def put_epoch(
    run_id: RunId, epoch: EpochPath, data: EpochIn, request: Request, session: IngestSession
) -> Response:
    """Store collapse statistics + metrics for one epoch (see ``app.series.epochs`` for the rules).

    A replay by the same attempt returns the stored record unchanged; a stale attempt gets 409.
    """
    record = epochs.epoch_record(epoch, data)
    if not session.in_transaction():  # the caller's access is known: a new epoch without a thread
        event = await _new_epoch(request, run_id, epoch, data, record)
        if event is not None:
            await publish_from_loop(request, [event], payload=record.model_dump(mode="json"))
            loop_db: LoopSqlite | None = getattr(request.app.state, "loop_sqlite", None)
            if loop_db is not None:  # upkeep after the publish: a WAL checkpoint in a thread, when due
                await loop_db.checkpoint_if_due()
            return model_response(record)
    return await run_in_threadpool(_put_epoch, request, session, run_id, epoch, data, record)


async def _new_epoch(
    request: Request, run_id: int, epoch: int, data: EpochIn, record: EpochPublic
) -> RunEvent | None:
    """A new epoch written by the event loop (PostgreSQL: one statement on its own connections;
    SQLite: one transaction on its own connection); None when it wrote nothing."""
    now = record.recorded_at
    pool: AsyncDriverPool | None = getattr(request.app.state, "driver_pool", None)
    if pool is not None:
        return await epoch_pg.insert_new_epoch(pool=pool, run_id=run_id, epoch=epoch, data=data, now=now)
    loop_db = _loop_writer(request)
    if loop_db is not None:
        return epoch_sqlite.insert_new_epoch(db=loop_db, run_id=run_id, epoch=epoch, data=data, now=now)
    return None


def _loop_writer(request: Request) -> LoopSqlite | None:
    """SQLite's event-loop connection, when there is one and the request's body is small enough for
    the event loop to write (a Content-Length within ``MAX_BODY_BYTES``: a chunked body is not)."""
    loop_db: LoopSqlite | None = getattr(request.app.state, "loop_sqlite", None)
    declared = request.headers.get("content-length", "")
    small = declared.isdigit() and int(declared) <= MAX_LOOP_BODY_BYTES
    return loop_db if small else None


def _put_epoch(
    request: Request, session: Session, run_id: int, epoch: int, data: EpochIn, record: EpochPublic
) -> Response:
    """Everything else (a replay, a refusal, a caller's first write, a write lock held elsewhere): in
    the request's session."""
    result = epochs.put_epoch(session=session, run_id=run_id, epoch=epoch, data=data, record=record)
    session.commit()
    if result.changed:
        publish(request, result.written.events, payload=result.record.model_dump(mode="json"))
    return model_response(result.record)


@router.post("/runs/{run_id}/metrics", response_model=MetricBatchPublic)
async def post_metrics(
    run_id: RunId, data: MetricBatchIn, request: Request, session: IngestSession
) -> Response:
    """Upsert up to 1000 (key, step, value) points; values must be finite."""
    keys, steps, values = metric_columns(data)  # points as dicts or models (app.api.bodies)
    loop_db = _loop_writer(request)
    if loop_db is not None and not session.in_transaction():  # access known: no thread
        batch = as_batch(keys, steps, values)
        now = utcnow()
        accepted = metrics_sqlite.write_new_points(
            db=loop_db, run_id=run_id, attempt=data.attempt, batch=batch, now=now
        )
        if accepted is not None:
            await loop_db.checkpoint_if_due()
            return model_response(MetricBatchPublic(run=run_id, accepted=accepted))
    return await run_in_threadpool(_post_metrics, session, run_id, data.attempt, keys, steps, values)


def _post_metrics(
    session: Session, run_id: int, attempt: int, keys: list[str], steps: list[int], values: list[float]
) -> Response:
    """Everything else (PostgreSQL, a refusal, a caller's first write, a write lock held elsewhere): in
    the request's session."""
    accepted = metrics.write_metrics(
        session=session, run_id=run_id, attempt=attempt, keys=keys, steps=steps, values=values
    )
    session.commit()
    return model_response(MetricBatchPublic(run=run_id, accepted=accepted))


@router.get("/runs/{run_id}/epochs", response_model=list[EpochPublic])
def list_epochs(
    run_id: RunId,
    session: SessionDep,
    _can: CanReadRun,
    since: Annotated[int | None, Query(ge=0, le=MAX_EPOCH)] = None,
    limit: Annotated[int | None, Query(ge=1, le=100_000)] = None,
    format: Literal["csv", "json"] | None = None,
) -> list[EpochPublic] | Response:
    """Stored epochs in order (``since``: first epoch wanted; ``format``: a csv/json download)."""
    if format is not None:
        return download(run_id, format, session=session)
    store.get_run(session=session, run_id=run_id)
    return epochs.list_epochs(session=session, run_id=run_id, since=since, limit=limit)
