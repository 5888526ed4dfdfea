"""Run lifecycle (DESIGN.md §4): claim, heartbeat, finish, cancel, resume, worker log lines.

Jobs are claimed by workers; SDK runs start ``running`` with a lease (:mod:`app.runs.submit`). Both
heartbeat; a silent job is re-queued or failed by the reaper, a silent SDK run ends ``crashed``.
An SDK run's own attempt may heartbeat it back from ``crashed`` (the process was alive but could
not reach the server); :func:`resume` starts a new attempt of it (fencing out the old process)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import and_, or_, select, update
from sqlalchemy.orm import Session

from app.errors import Conflict
from app.models import Run, RunEvent, utcnow
from app.runs.fencing import check_attempt
from app.runs.store import Written, get_run, status_event, writable_run
from collapsewatch.contract import TERMINAL_STATUSES, FinishIn
from collapsewatch.contract_sdk import ConfigUpdateIn


@dataclass
class ClaimResult:
    """``run`` is set when the claim won; otherwise ``message`` says why (the route answers 409).

    A refused claim may still have changed the run (exhausted attempts -> failed), so the caller
    commits and publishes ``written`` either way.
    """

    run: Run | None
    message: str
    written: Written


def _claimable(run_id: int, now: Any) -> Any:
    expired = and_(Run.status.in_(("running", "lost")), Run.lease_until < now)
    return and_(
        Run.id == run_id,
        Run.kind == "job",
        Run.cancel_requested.is_(False),
        or_(Run.status == "queued", expired),
    )


def claim(*, session: Session, run_id: int, worker: dict[str, Any], lease_seconds: int) -> ClaimResult:
    """One atomic UPDATE takes the run: queued (or an expired lease) -> running, attempt += 1."""
    now = utcnow()
    lease = now + timedelta(seconds=lease_seconds)
    won = session.execute(
        update(Run)
        .where(_claimable(run_id, now), Run.attempt < Run.max_attempts)
        .values(
            status="running",
            attempt=Run.attempt + 1,
            lease_until=lease,
            started_at=now,
            updated_at=now,
            worker=worker,
            error=None,
        )
        .returning(Run.id)
        .execution_options(synchronize_session=False)
    ).first()
    if won is not None:
        run = session.scalars(
            select(Run).where(Run.id == run_id).execution_options(populate_existing=True)
        ).one()
        return ClaimResult(run, "", Written([status_event(session=session, run=run)]))
    return _refuse(session=session, run_id=run_id, now=now)


def _refuse(*, session: Session, run_id: int, now: Any) -> ClaimResult:
    run = get_run(session=session, run_id=run_id, lock=True)
    if run.kind != "job":
        return ClaimResult(None, f"run {run_id} is an SDK run; only jobs are claimed", Written())
    expired = run.lease_until is not None and run.lease_until < now
    stuck = run.status == "queued" or (run.status in ("running", "lost") and expired)
    if stuck and run.cancel_requested:
        _end(run, "cancelled", None, now)
        return ClaimResult(
            None, f"run {run_id} was cancelled", Written([status_event(session=session, run=run)])
        )
    if stuck and run.attempt >= run.max_attempts:
        reason = f"gave up after {run.attempt} attempt(s) (max_attempts={run.max_attempts})"
        if run.error:
            reason = f"{reason}; last error: {run.error}"
        _end(run, "failed", reason, now)
        return ClaimResult(
            None, f"run {run_id} failed: {reason}", Written([status_event(session=session, run=run)])
        )
    detail = (
        f" (lease until {run.lease_until.isoformat()})" if run.lease_until and run.status == "running" else ""
    )
    return ClaimResult(None, f"run {run_id} is {run.status}{detail}; nothing to claim", Written())


def _end(run: Run, status: str, error: str | None, now: Any) -> None:
    run.status = status
    run.error = error
    run.finished_at = now
    run.updated_at = now
    run.lease_until = None


def heartbeat(*, session: Session, run_id: int, attempt: int, lease_seconds: int) -> tuple[Run, Written]:
    """Extend the lease of the current attempt; the caller reads ``cancel_requested`` from the run.

    An SDK run that was marked ``crashed`` while its process was merely cut off comes back to
    ``running`` when that same attempt heartbeats again (the status change is in ``Written``)."""
    now = utcnow()
    revived = session.execute(
        update(Run)
        .where(Run.id == run_id, Run.attempt == attempt, Run.kind == "sdk", Run.status == "crashed")
        .where(Run.deleted_at.is_(None))  # a crashed run in the trash stays there (app.runs.bulk)
        .values(status="running", finished_at=None, error=None)
        .returning(Run.id)
        .execution_options(synchronize_session=False)
    ).first()
    row = session.execute(
        update(Run)
        .where(Run.id == run_id, Run.attempt == attempt, Run.status.in_(("running", "lost")))
        .values(lease_until=now + timedelta(seconds=lease_seconds), status="running", updated_at=now)
        .returning(Run.id)
        .execution_options(synchronize_session=False)
    ).first()
    run = get_run(session=session, run_id=run_id)
    if row is None:
        if run.status in ("running", "lost", "crashed"):
            check_attempt(run, attempt)
        raise Conflict(f"run {run_id} is {run.status}; there is no lease to extend")
    session.refresh(run)
    return run, Written([status_event(session=session, run=run)] if revived else [])


def resume(*, session: Session, run_id: int, lease_seconds: int) -> tuple[Run, Written]:
    """A new attempt of SDK run ``run_id``, ``running`` with a fresh lease, whatever its status was
    (``crashed`` typically). Writes of older attempts get 409 from now on (fencing)."""
    run = get_run(session=session, run_id=run_id, lock=True)
    if run.kind != "sdk":
        raise Conflict(f"run {run_id} is a job; re-run it from its page (only SDK runs are resumed)")
    if run.deleted_at is not None:
        raise Conflict(f"run {run_id} is in the trash; restore it first (POST /api/v1/run-actions)")
    now = utcnow()
    run.attempt += 1
    run.max_attempts = max(run.max_attempts, run.attempt)
    run.status = "running"
    run.lease_until = now + timedelta(seconds=lease_seconds)
    run.cancel_requested = False
    run.error = None
    run.finished_at = None
    run.updated_at = now
    session.flush()
    return run, Written([status_event(session=session, run=run)])


def finish(*, session: Session, run_id: int, data: FinishIn) -> tuple[Run, Written]:
    """End the current attempt with its final status. Replaying the same finish is a no-op."""
    run = get_run(session=session, run_id=run_id, lock=True)
    if run.status in TERMINAL_STATUSES and run.attempt == data.attempt and run.status == data.status:
        return run, Written()
    run = writable_run(session=session, run_id=run_id, attempt=data.attempt)
    if run.status == "queued":
        raise Conflict(f"run {run_id} is queued; claim it before finishing it")
    _end(run, data.status, data.error, utcnow())
    return run, Written([status_event(session=session, run=run)])


def cancel(*, session: Session, run_id: int) -> tuple[Run, Written]:
    """Queued: cancelled at once. Running: ``cancel_requested`` (the worker ends it cancelled)."""
    run = get_run(session=session, run_id=run_id, lock=True)
    if run.status in TERMINAL_STATUSES:
        raise Conflict(f"run {run_id} is already {run.status}; nothing to cancel")
    now = utcnow()
    if run.status == "queued":
        _end(run, "cancelled", None, now)
    elif run.cancel_requested:
        return run, Written()
    else:
        run.cancel_requested = True
        run.updated_at = now
    return run, Written([status_event(session=session, run=run)])


def update_config(*, session: Session, run_id: int, data: ConfigUpdateIn) -> Run:
    """Merge ``data.config`` into an SDK run's config (a job's config is its spec: 409)."""
    run = writable_run(session=session, run_id=run_id, attempt=data.attempt)
    if run.kind != "sdk":
        raise Conflict(f"run {run_id} is a job; its config is the job's spec and cannot change")
    run.config = {**run.config, **data.config}
    run.updated_at = utcnow()
    return run


def append_logs(*, session: Session, run_id: int, attempt: int, lines: list[str]) -> Written:
    """Store worker/SDK log lines as run events (one per line); allowed after the finish too."""
    check_attempt(get_run(session=session, run_id=run_id, lock=True), attempt)
    now = utcnow()
    events = [
        RunEvent(run_id=run_id, type="log", payload={"line": line, "attempt": attempt}, created_at=now)
        for line in lines
    ]
    session.add_all(events)
    session.flush()
    return Written(events)


def list_logs(*, session: Session, run_id: int, after: int = 0, limit: int = 1000) -> list[RunEvent]:
    get_run(session=session, run_id=run_id)
    stmt = (
        select(RunEvent)
        .where(RunEvent.run_id == run_id, RunEvent.type == "log", RunEvent.id > after)
        .order_by(RunEvent.id)
        .limit(limit)
    )
    return list(session.scalars(stmt))
