"""The reaper and the sweeper: plain functions over a session (DESIGN.md §4).

- :func:`reap_expired` turns jobs whose lease expired into ``lost`` (to be re-sent while
  ``attempt < max_attempts``) or ends them: ``failed`` with a reason when no attempt is left,
  ``cancelled`` when a cancel was requested. An SDK run whose lease expired (its process stopped
  heartbeating) ends ``crashed``: nothing can re-run it, but ``cw.init(id=…, resume=True)`` continues it.
- :func:`sweep_queued` picks runs that have waited in ``queued`` (or ``lost``) longer than
  ``older_than`` since they were last sent, and marks them re-sent (``updated_at``), so a lost broker
  message or a broker restart loses nothing. A duplicate message is harmless: the claim is atomic.

Every change is a conditional UPDATE on the state that was read, so two processes acting at once
cannot both change a run; :mod:`app.jobs.maintenance` additionally keeps a single leader.
The caller commits, then sends the returned runs to the queue and publishes the events.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import and_, or_, select, update
from sqlalchemy.orm import Session

from app.models import Run, RunEvent, utcnow
from app.runs.store import status_event

MAX_WINDOW_FACTOR = 10


@dataclass(frozen=True)
class ToSend:
    run_id: int
    device: str | None


@dataclass
class Actions:
    """What a tick decided: runs to (re-)send after the commit, and status events to publish."""

    send: list[ToSend] = field(default_factory=list)
    events: list[RunEvent] = field(default_factory=list)
    reaped: dict[int, str] = field(default_factory=dict)  # run id -> new status

    def extend(self, other: Actions) -> None:
        self.send += other.send
        self.events += other.events
        self.reaped |= other.reaped


def _device(run: Run) -> str | None:
    value = (run.config or {}).get("device")
    return value if isinstance(value, str) else None


def reap_expired(*, session: Session, now: datetime | None = None, limit: int = 200) -> Actions:
    """Handle runs whose lease has expired (status ``running``, ``lease_until < now``)."""
    now = now or utcnow()
    actions = Actions()
    expired = session.scalars(
        select(Run).where(Run.status == "running", Run.lease_until < now).order_by(Run.id).limit(limit)
    ).unique()
    for run in list(expired):
        lease = run.lease_until
        if run.kind == "sdk":
            values = _crashed(run, now)
        elif run.cancel_requested:
            values = {
                "status": "cancelled",
                "finished_at": now,
                "lease_until": None,
                "error": f"cancelled; attempt {run.attempt} stopped responding before it could stop",
            }
        elif run.attempt < run.max_attempts:
            values = {
                "status": "lost",
                "error": f"attempt {run.attempt} lost: its lease expired at {lease:%Y-%m-%d %H:%M:%S} UTC "
                f"(worker died or stopped heartbeating); re-queued as attempt {run.attempt + 1} "
                f"of {run.max_attempts}",
            }
        else:
            values = {
                "status": "failed",
                "finished_at": now,
                "lease_until": None,
                "error": f"lease expired on attempt {run.attempt} of {run.max_attempts} (worker died or "
                "stopped heartbeating); no attempts left. Check the worker's logs, then resubmit.",
            }
        result = session.execute(
            update(Run)
            .where(
                Run.id == run.id,
                Run.status == "running",
                Run.attempt == run.attempt,
                Run.lease_until < now,
            )
            .values(updated_at=now, **values)
            .execution_options(synchronize_session=False)
        )
        if not getattr(result, "rowcount", 0):
            continue  # a heartbeat, finish or another reaper got there first
        session.refresh(run)
        actions.reaped[run.id] = run.status
        actions.events.append(status_event(session=session, run=run))
        if run.status == "lost":
            actions.send.append(ToSend(run.id, _device(run)))
    return actions


def _crashed(run: Run, now: datetime) -> dict[str, object]:
    lease = run.lease_until
    return {
        "status": "crashed",
        "finished_at": now,
        "lease_until": None,
        "error": f"no heartbeat from attempt {run.attempt} since its lease expired at "
        f"{lease:%Y-%m-%d %H:%M:%S} UTC (the process died or lost the server); continue it with "
        f"cw.init(id={run.id}, resume=True)",
    }


def sweep_queued(
    *, session: Session, older_than: timedelta, now: datetime | None = None, limit: int = 200
) -> Actions:
    """Re-send runs waiting to be claimed (``queued``, or ``lost`` with attempts left) that were last
    sent before ``now - older_than``, the longest-waiting first. The window grows with the wait
    (a quarter of it, at most ``MAX_WINDOW_FACTOR * older_than``), so a long queue does not fill the
    broker with duplicates while a lost message is still re-sent within minutes."""
    now = now or utcnow()
    cutoff = now - older_than
    waiting = or_(
        Run.status == "queued",
        and_(Run.status == "lost", Run.attempt < Run.max_attempts),
    )
    stale = session.scalars(
        select(Run)
        .where(Run.kind == "job", waiting, Run.cancel_requested.is_(False), Run.updated_at < cutoff)
        .order_by(Run.updated_at, Run.id)
        .limit(limit)
    ).unique()
    actions = Actions()
    for run in list(stale):
        waited = now - (run.started_at or run.created_at)
        window = min(max(older_than, waited / 4), older_than * MAX_WINDOW_FACTOR)
        if run.updated_at >= now - window:
            continue
        result = session.execute(
            update(Run)
            .where(Run.id == run.id, Run.status == run.status, Run.updated_at < cutoff)
            .values(updated_at=now)
            .execution_options(synchronize_session=False)
        )
        if getattr(result, "rowcount", 0):
            actions.send.append(ToSend(run.id, _device(run)))
    return actions


def cancel_unclaimed(*, session: Session, now: datetime | None = None, limit: int = 200) -> Actions:
    """End ``lost`` runs whose cancel was requested while no attempt was running."""
    now = now or utcnow()
    actions = Actions()
    rows = session.scalars(
        select(Run)
        .where(Run.kind == "job", Run.status == "lost", Run.cancel_requested.is_(True))
        .limit(limit)
    ).unique()
    for run in list(rows):
        result = session.execute(
            update(Run)
            .where(Run.id == run.id, Run.status == "lost", Run.attempt == run.attempt)
            .values(status="cancelled", finished_at=now, lease_until=None, updated_at=now)
            .execution_options(synchronize_session=False)
        )
        if getattr(result, "rowcount", 0):
            session.refresh(run)
            actions.reaped[run.id] = "cancelled"
            actions.events.append(status_event(session=session, run=run))
    return actions


def orphaned_checkpoints(*, session: Session, stored_run_ids: list[int]) -> list[int]:
    """Run ids that have checkpoints stored but no longer exist (deleted runs)."""
    if not stored_run_ids:
        return []
    existing = set(session.scalars(select(Run.id).where(Run.id.in_(stored_run_ids))))
    return [run_id for run_id in stored_run_ids if run_id not in existing]
