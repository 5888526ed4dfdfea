"""Runs: creation (SDK runs and job submissions), lookup, listing, events."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import ValidationError
from sqlalchemy import ColumnElement, Select, String, cast, exists, func, select, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Session, contains_eager, lazyload

from app.models import Project, ProjectMember, Run, RunEvent, utcnow
from app.schemas import TERMINAL_STATUSES, JobSpec, JobSubmit, RunCreate, RunPublic
from app.services.errors import Conflict, InvalidInput, NotFound
from app.services.upsert import insert_ignore

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


def run_public(run: Run) -> RunPublic:
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
    )


_EVENTS: Any = RunEvent.__table__
_INSERT_EVENT = _EVENTS.insert().returning(_EVENTS.c.id)


def record_event(*, session: Session, run_id: int, type: str, payload: dict[str, Any]) -> RunEvent:
    """Insert an event (Core INSERT … RETURNING: no ORM flush); returns it, detached, with its id."""
    values = {"run_id": run_id, "type": type, "payload": payload, "created_at": utcnow()}
    event_id = session.execute(_INSERT_EVENT, values).scalar_one()
    return RunEvent(id=event_id, **values)


def status_event(*, session: Session, run: Run) -> RunEvent:
    payload = {
        "status": run.status,
        "attempt": run.attempt,
        "cancel_requested": run.cancel_requested,
        "error": run.error,
    }
    return record_event(session=session, run_id=run.id, type="status", payload=payload)


def ensure_project(*, session: Session, name: str, owner_id: int | None) -> Project:
    """The project called ``name``; created (with ``owner_id`` as owner) if it does not exist.

    An existing project's members are left alone (app.authz decides who may add runs to it)."""
    existing = session.scalars(select(Project).where(Project.name == name)).one_or_none()
    if existing is not None:
        return existing
    insert_ignore(session, Project, {"name": name, "created_at": utcnow()}, conflict=["name"])
    project = session.scalars(select(Project).where(Project.name == name)).one()
    if owner_id is not None:
        row = {"project_id": project.id, "user_id": owner_id, "role": "owner", "created_at": utcnow()}
        if session.get(ProjectMember, (project.id, owner_id)) is None:
            insert_ignore(session, ProjectMember, row, conflict=["project_id", "user_id"])
    return project


def get_run(*, session: Session, run_id: int, lock: bool = False) -> Run:
    """The run, or NotFound. ``lock`` takes a row lock (PostgreSQL; SQLite writes are serialised)."""
    stmt = select(Run).where(Run.id == run_id)
    if lock:  # a write: the project is rarely needed, so it is not joined (loaded on access)
        stmt = stmt.options(lazyload(Run.project)).with_for_update(of=Run)
    run = session.scalars(stmt).unique().one_or_none()
    if run is None:
        raise NotFound(f"run {run_id} does not exist")
    return run


def writable_run(*, session: Session, run_id: int, attempt: int) -> Run:
    """Lock the run for a write from ``attempt``: 404 unknown, 409 terminal or not the current attempt."""
    run = get_run(session=session, run_id=run_id, lock=True)
    if run.status in TERMINAL_STATUSES:
        raise Conflict(f"run {run_id} is {run.status}; it accepts no more writes")
    check_attempt(run, attempt)
    if run.status == "queued":
        raise Conflict(
            f"run {run_id} is queued again (the lease of attempt {attempt} expired); stop this attempt"
            if attempt
            else f"run {run_id} is queued; claim it before writing"
        )
    return run


def check_attempt(run: Run, attempt: int) -> None:
    if attempt < run.attempt:
        raise Conflict(
            f"attempt {attempt} is stale: run {run.id} is on attempt {run.attempt}; stop this attempt"
        )
    if attempt > run.attempt:
        raise Conflict(
            f"attempt {attempt} of run {run.id} has not been claimed (current attempt: {run.attempt})"
        )


def create_sdk_run(*, session: Session, data: RunCreate, owner_id: int | None) -> tuple[Run, Written]:
    project = ensure_project(session=session, name=data.project, owner_id=owner_id)
    now = utcnow()
    run = Run(
        project=project,
        name=data.name,
        kind="sdk",
        config=data.config,
        status="running",
        attempt=1,
        max_attempts=1,
        tags=data.tags,
        owner_id=owner_id,
        summary={},
        created_at=now,
        updated_at=now,
        started_at=now,
    )
    session.add(run)
    session.flush()
    return run, Written([status_event(session=session, run=run)])


def expand_jobs(data: JobSubmit) -> list[JobSpec]:
    """``data.expand()`` with errors turned into InvalidInput naming the field."""
    try:
        return data.expand()
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = [str(p) for p in first["loc"]]
        prefix = ["sweep", loc[0]] if loc and loc[0] in data.sweep else ["spec"]
        if loc and loc[0] == "seed" and data.seeds is not None:
            prefix = ["seeds"]
        msg = str(first["msg"]).removeprefix("Value error, ")
        raise InvalidInput(["body", *prefix, *loc[prefix[0] == "sweep" :]], msg) from exc
    except ValueError as exc:
        message = str(exc)
        head, _, rest = message.partition(":")
        if head.startswith(("sweep", "spec", "seeds")) and rest:
            raise InvalidInput(["body", *head.split(".")], rest.strip()) from exc
        raise InvalidInput(["body"], message) from exc


def _job_name(data: JobSubmit, spec: JobSpec) -> str:
    base = data.name or f"{spec.objective}+{spec.regularizer}"
    parts = [f"{key}={getattr(spec, key)}" for key in data.sweep]
    if data.seeds is not None and len(data.seeds) > 1:
        parts.append(f"seed={spec.seed}")
    return f"{base} {','.join(parts)}"[:200] if parts else base[:200]


def create_jobs(
    *, session: Session, data: JobSubmit, owner_id: int | None, max_attempts: int
) -> tuple[list[Run], Written]:
    specs = expand_jobs(data)
    project = ensure_project(session=session, name=data.project, owner_id=owner_id)
    sweep_id = uuid.uuid4().hex[:16] if len(specs) > 1 or data.sweep else None
    now = utcnow()
    runs = [
        Run(
            project=project,
            name=_job_name(data, spec),
            kind="job",
            config=spec.model_dump(mode="json"),
            status="queued",
            attempt=0,
            max_attempts=max_attempts,
            tags=data.tags,
            owner_id=owner_id,
            sweep_id=sweep_id,
            summary={},
            created_at=now,
            updated_at=now,
        )
        for spec in specs
    ]
    session.add_all(runs)
    session.flush()
    return runs, Written([status_event(session=session, run=run) for run in runs])


@dataclass(frozen=True)
class RunFilter:
    project: str | None = None
    status: Sequence[str] | None = None
    sweep: str | None = None
    tag: str | None = None
    kind: Literal["job", "sdk"] | None = None
    project_ids: Sequence[int] | None = None  # None: every project (app.authz.visible_project_ids)


def _has_tag(session: Session, tag: str) -> ColumnElement[bool]:
    if session.get_bind().dialect.name == "postgresql":
        return cast(Run.tags, JSONB).contains([tag])
    each = func.json_each(Run.tags).table_valued("value")
    return exists(select(text("1")).select_from(each).where(each.c.value == cast(tag, String)))


def _filtered(session: Session, filt: RunFilter) -> Select[Any]:
    stmt = select(Run).join(Run.project).options(contains_eager(Run.project))
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
        stmt = stmt.where(_has_tag(session, filt.tag))
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
    stmt = _filtered(session, filt)
    total = session.scalar(select(func.count()).select_from(stmt.with_only_columns(Run.id).subquery()))
    runs = session.scalars(stmt.order_by(*order).limit(limit).offset(offset)).unique().all()
    return list(runs), int(total or 0)
