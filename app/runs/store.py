"""Runs as stored: lookup, fencing checks, listing and filtering, and their events."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from sqlalchemy import (
    ColumnElement,
    Integer,
    Select,
    String,
    bindparam,
    cast,
    exists,
    func,
    select,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Session, contains_eager, lazyload

from app.errors import InvalidInput, NotFound
from app.models import Project, Run, RunEvent, utcnow
from app.runs.fencing import check_writable
from app.runs.visibility import Lifecycle, lifecycle_clause
from collapsewatch.contract import RunPublic

SORTS: dict[str, Any] = {
    "created_at": Run.created_at,
    "id": Run.id,
    "name": Run.name,
    "status": Run.status,
    "updated_at": Run.updated_at,
}


@dataclass
class Written:
    """What a write produced: the events to publish after the commit."""

    events: list[RunEvent] = field(default_factory=list)


def run_public(run: Run, *, provenance: bool = True) -> RunPublic:
    """The wire form of ``run``; lists leave out the (few-KB) ``provenance`` with ``provenance=False``."""
    return RunPublic(
        id=run.id,
        project=run.project.name,
        name=run.name,
        kind="job" if run.kind == "job" else "sdk",
        status=run.status,
        attempt=run.attempt,
        max_attempts=run.max_attempts,
        config=run.config,
        tags=run.tags,
        sweep_id=run.sweep_id,
        created_at=run.created_at,
        started_at=run.started_at,
        finished_at=run.finished_at,
        lease_until=run.lease_until,
        cancel_requested=run.cancel_requested,
        error=run.error,
        worker=run.worker,
        summary=run.summary,
        last_epoch=run.last_epoch,
        client_id=run.client_id,
        provenance=run.provenance if provenance else None,
        archived_at=run.archived_at,
        deleted_at=run.deleted_at,
    )


_EVENTS: Any = RunEvent.__table__
_INSERT_EVENT = _EVENTS.insert().returning(_EVENTS.c.id)


def record_event(*, session: Session, run_id: int, type: str, payload: dict[str, Any]) -> RunEvent:
    """Insert an event (Core INSERT … RETURNING: no ORM flush); returns it, transient, with its id."""
    values = {"run_id": run_id, "type": type, "payload": payload, "created_at": utcnow()}
    # on the session's connection (no ORM execute machinery); pending ORM changes flush at commit
    event_id = session.connection().execute(_INSERT_EVENT, values).scalar_one()
    return RunEvent(id=event_id, **values)


def status_event(*, session: Session, run: Run) -> RunEvent:
    payload = {
        "status": run.status,
        "attempt": run.attempt,
        "cancel_requested": run.cancel_requested,
        "error": run.error,
    }
    return record_event(session=session, run_id=run.id, type="status", payload=payload)


# the project is rarely needed by a write, so it is not joined (loaded on access)
_LOCKED_RUN = (
    select(Run)
    .where(Run.id == bindparam("run_id", type_=Integer))
    .options(lazyload(Run.project))
    .with_for_update(of=Run)
)


def get_run(*, session: Session, run_id: int, lock: bool = False) -> Run:
    """The run, or NotFound. ``lock`` takes a row lock (PostgreSQL; SQLite writes are serialised)."""
    if lock:  # a write (every ingestion request): one statement, built once
        run = session.scalars(_LOCKED_RUN, {"run_id": run_id}).unique().one_or_none()
    else:
        run = session.scalars(select(Run).where(Run.id == run_id)).unique().one_or_none()
    if run is None:
        raise NotFound(f"run {run_id} does not exist")
    return run


def writable_run(*, session: Session, run_id: int, attempt: int) -> Run:
    """Lock the run for a write from ``attempt``: 404 unknown, 409 terminal or not the current attempt
    (``app.runs.fencing.check_writable``; the ingestion routes read a lean row there instead)."""
    run = get_run(session=session, run_id=run_id, lock=True)
    check_writable(run, attempt)
    return run


@dataclass(frozen=True)
class RunFilter:
    project: str | None = None
    status: Sequence[str] | None = None
    sweep: str | None = None
    tag: str | None = None
    kind: Literal["job", "sdk"] | None = None
    config: Sequence[tuple[str, str]] = ()  # (key, value): the config's top-level key, compared as text
    project_ids: Sequence[int] | None = None  # None: every project (app.auth.roles.visible_project_ids)
    lifecycle: Lifecycle = "live"  # archived and deleted runs only when asked (app.runs.visibility)


def has_tag(*, session: Session, tag: str) -> ColumnElement[bool]:
    """The run's tags hold ``tag`` (PostgreSQL: ``@>`` on jsonb, GIN-indexed by 0010; SQLite: json_each)."""
    if session.get_bind().dialect.name == "postgresql":
        return cast(Run.tags, JSONB).contains([tag])
    each = func.json_each(Run.tags).table_valued("value")
    return exists(select(text("1")).select_from(each).where(each.c.value == cast(tag, String)))


def config_equals(*, key: str, value: str) -> ColumnElement[bool]:
    """The run's config has ``key`` equal to ``value`` as text (``config ->> key``; numbers as written).
    On PostgreSQL ``regularizer`` and ``objective`` have expression indexes (0010_scale_indexes)."""
    return Run.config[key].as_string() == value


def _filtered(*, session: Session, filt: RunFilter) -> Select[Any]:
    stmt = select(Run).join(Run.project).options(contains_eager(Run.project))
    stmt = stmt.where(lifecycle_clause(filt.lifecycle))
    if filt.project:
        stmt = stmt.where(Project.name == filt.project)
    if filt.project_ids is not None:
        stmt = stmt.where(Run.project_id.in_(filt.project_ids))
    if filt.status:
        stmt = stmt.where(Run.status.in_(filt.status))
    if filt.sweep:
        stmt = stmt.where(Run.sweep_id == filt.sweep)
    if filt.kind:
        stmt = stmt.where(Run.kind == filt.kind)
    if filt.tag:
        stmt = stmt.where(has_tag(session=session, tag=filt.tag))
    for key, value in filt.config:
        stmt = stmt.where(config_equals(key=key, value=value))
    return stmt


def list_runs(
    *, session: Session, filt: RunFilter, limit: int = 50, offset: int = 0, sort: str = "-created_at"
) -> tuple[list[Run], int]:
    """Runs matching ``filt`` (newest first by default) and the total count."""
    key = sort.removeprefix("-")
    if key not in SORTS:
        raise InvalidInput(["query", "sort"], f"sort {sort!r} is not allowed; use one of {sorted(SORTS)}")
    column = SORTS[key]
    order = [column.desc(), Run.id.desc()] if sort.startswith("-") else [column.asc(), Run.id.asc()]
    stmt = _filtered(session=session, filt=filt)
    total = session.scalar(select(func.count()).select_from(stmt.with_only_columns(Run.id).subquery()))
    runs = session.scalars(stmt.order_by(*order).limit(limit).offset(offset)).unique().all()
    return list(runs), int(total or 0)
