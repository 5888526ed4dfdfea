"""Jobs: submission (grid x seeds) and the worker lifecycle (claim, heartbeat, finish, logs)."""

from __future__ import annotations

import logging
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request, Response

from app.api.access import CanReadRun, IngestSession, UserActorDep
from app.api.common import model_response
from app.auth import roles
from app.deps import RunId, SessionDep, SettingsDep, UserDep
from app.runs import lifecycle, store, submit
from app.runs.events import publish
from collapsewatch.contract import (
    AttemptIn,
    ClaimIn,
    ClaimPublic,
    FinishIn,
    HeartbeatPublic,
    JobSpec,
    JobSubmit,
    LogBatchIn,
    LogLinePublic,
    RunPublic,
)

log = logging.getLogger(__name__)
router = APIRouter(prefix="/api/v1", tags=["jobs"])


@router.post("/jobs", status_code=201, response_model=list[RunPublic])
def submit_jobs(
    data: JobSubmit,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    user: UserDep,
    actor: UserActorDep,
) -> list[RunPublic]:
    """One queued run per grid point x seed (sharing a ``sweep_id``), enqueued after the commit."""
    roles.check_new_runs(session=session, actor=actor, project_name=data.project)
    created = submit.submit_jobs(
        session=session,
        data=data,
        owner_id=user.user_id,
        max_attempts=settings.max_attempts,
        publisher=request.app.state.publisher,
        enqueue=request.app.state.enqueue,
    )
    return [store.run_public(run) for run in created]


@router.post("/runs/{run_id}/claim", response_model=ClaimPublic)
def claim_run(
    run_id: RunId,
    data: ClaimIn,
    request: Request,
    session: IngestSession,
    settings: SettingsDep,
) -> ClaimPublic:
    """Take the run for a new attempt (409 when someone else holds it or it is finished)."""
    worker = data.worker.model_dump(mode="json", exclude_none=True)
    result = lifecycle.claim(
        session=session, run_id=run_id, worker=worker, lease_seconds=settings.lease_seconds
    )
    public = store.run_public(result.run) if result.run is not None else None  # before the commit
    session.commit()
    publish(request, result.written.events)
    if result.run is None or public is None:
        raise HTTPException(409, detail=result.message)
    run = result.run
    assert run.lease_until is not None
    checkpoints = getattr(request.app.state, "checkpoints", None)  # app.runs.artifacts.CheckpointStore
    return ClaimPublic(
        run=public,
        attempt=run.attempt,
        lease_until=run.lease_until,
        spec=JobSpec.model_validate(run.config),
        resume_epoch=_resume_epoch(checkpoints, run.id),
        lease_seconds=settings.lease_seconds,
    )


def _resume_epoch(checkpoints: Any, run_id: int) -> int | None:
    """The newest checkpoint's epoch; None when there is none or the artifact store cannot be read
    now (the claim is already committed: the worker asks for the checkpoint itself and retries)."""
    if checkpoints is None:
        return None
    try:
        epoch: int | None = checkpoints.latest_epoch(run_id)
    except OSError as exc:
        log.warning("claim of run %s: the artifact store is unavailable (%s)", run_id, exc)
        return None
    return epoch


@router.post("/runs/{run_id}/heartbeat", response_model=HeartbeatPublic)
def heartbeat(
    run_id: RunId,
    data: AttemptIn,
    request: Request,
    session: IngestSession,
    settings: SettingsDep,
) -> Response:
    """Extend the lease (a worker's job or an SDK run); read ``cancel_requested`` to stop cooperatively."""
    run, written = lifecycle.heartbeat(
        session=session, run_id=run_id, attempt=data.attempt, lease_seconds=settings.lease_seconds
    )
    session.commit()
    publish(request, written.events)
    assert run.lease_until is not None
    return model_response(HeartbeatPublic(lease_until=run.lease_until, cancel_requested=run.cancel_requested))


@router.post("/runs/{run_id}/finish", response_model=RunPublic)
def finish_run(run_id: RunId, data: FinishIn, request: Request, session: IngestSession) -> RunPublic:
    run, written = lifecycle.finish(session=session, run_id=run_id, data=data)
    public = store.run_public(run)  # before the commit: its lazy load of the project would begin
    session.commit()  # a second write transaction on this session (on SQLite, the lock again)
    publish(request, written.events)
    return public


@router.post("/runs/{run_id}/logs", status_code=201, response_model=list[LogLinePublic])
def append_logs(
    run_id: RunId, data: LogBatchIn, request: Request, session: IngestSession
) -> list[LogLinePublic]:
    written = lifecycle.append_logs(session=session, run_id=run_id, attempt=data.attempt, lines=data.lines)
    session.commit()
    publish(request, written.events)
    return [_log_public(event) for event in written.events]


@router.get("/runs/{run_id}/logs", response_model=list[LogLinePublic])
def list_logs(
    run_id: RunId,
    session: SessionDep,
    _can: CanReadRun,
    after: Annotated[int, Query(ge=0, le=2**62)] = 0,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
) -> list[LogLinePublic]:
    """Log lines with ``id > after`` (oldest first)."""
    events = lifecycle.list_logs(session=session, run_id=run_id, after=after, limit=limit)
    return [_log_public(event) for event in events]


def _log_public(event: lifecycle.RunEvent) -> LogLinePublic:
    return LogLinePublic(
        id=event.id,
        attempt=int(event.payload.get("attempt", 0)),
        line=str(event.payload.get("line", "")),
        created_at=event.created_at,
    )
