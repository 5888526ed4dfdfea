"""Epoch records (idempotent PUT with attempt fencing), scalar metric batches, epoch listing."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query, Request, Response

from app.api.access import CanReadRun, IngestSession
from app.api.common import model_response
from app.api.export import download
from app.api.fast_body import FastBodyRoute
from app.deps import RunId, SessionDep
from app.runs import store
from app.runs.events import publish
from app.series import epochs, metrics
from app.series.epochs import MAX_EPOCH
from collapsewatch.contract import EpochIn, EpochPublic, MetricBatchIn, MetricBatchPublic

# ingestion bodies: validated from their bytes in one pass when valid (app.api.fast_body)
router = APIRouter(prefix="/api/v1", tags=["ingestion"], route_class=FastBodyRoute)
EpochPath = Annotated[int, Path(ge=0, le=MAX_EPOCH, description="epoch number, from 0")]


@router.put("/runs/{run_id}/epochs/{epoch}", response_model=EpochPublic)
def put_epoch(
    run_id: RunId, epoch: EpochPath, data: EpochIn, request: Request, session: IngestSession
) -> Response:
    """Store collapse statistics + metrics for one epoch (see ``app.series.epochs`` for the rules).

    A replay by the same attempt returns the stored record unchanged; a stale attempt gets 409.
    """
    result = epochs.put_epoch(session=session, run_id=run_id, epoch=epoch, data=data)
    session.commit()
    if result.changed:
        publish(request, result.written.events, payload=result.record.model_dump(mode="json"))
    return model_response(result.record)


@router.post("/runs/{run_id}/metrics", response_model=MetricBatchPublic)
def post_metrics(run_id: RunId, data: MetricBatchIn, session: IngestSession) -> Response:
    """Upsert up to 1000 (key, step, value) points; values must be finite."""
    accepted = metrics.write_metrics(session=session, run_id=run_id, data=data)
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
