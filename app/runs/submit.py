"""Creating runs: SDK runs, and job submissions (one run per grid point x seed), which
:func:`submit_jobs` takes through create -> commit -> publish -> enqueue for every caller (the JSON
API, the browser form, re-runs and the demo through the API)."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Sequence
from datetime import timedelta

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.datasets.store import check_job_datasets
from app.errors import InvalidInput
from app.models import Project, ProjectMember, Run, utcnow
from app.runs.events import Publisher, publish_events
from app.runs.ids import next_run_ids
from app.runs.store import Written, status_event
from app.runs.upsert import dialect_insert, insert_ignore
from collapsewatch.contract import JobSpec, JobSubmit, RunCreate

log = logging.getLogger(__name__)


def ensure_project(*, session: Session, name: str, owner_id: int | None) -> Project:
    """The project called ``name``; created (with ``owner_id`` as owner) if it does not exist.

    An existing project's members are left alone (app.auth.roles decides who may add runs to it)."""
    existing = session.scalars(select(Project).where(Project.name == name)).one_or_none()
    if existing is not None:
        return existing
    insert_ignore(
        session=session, table=Project, row={"name": name, "created_at": utcnow()}, conflict=["name"]
    )
    project = session.scalars(select(Project).where(Project.name == name)).one()
    if owner_id is not None:
        row = {"project_id": project.id, "user_id": owner_id, "role": "owner", "created_at": utcnow()}
        if session.get(ProjectMember, (project.id, owner_id)) is None:
            insert_ignore(session=session, table=ProjectMember, row=row, conflict=["project_id", "user_id"])
    return project


def create_sdk_run(
    *, session: Session, data: RunCreate, owner_id: int | None, lease_seconds: int = 60
) -> tuple[Run, Written]:
    """A ``running`` SDK run holding a lease of ``lease_seconds`` (its heartbeats extend it; the
    reaper ends a silent one ``crashed``). With a ``client_id`` already used in the project, the
    existing run comes back unchanged and ``written`` is empty (nothing was created), so a retried
    create or a repeated offline sync never makes a second run."""
    project = ensure_project(session=session, name=data.project, owner_id=owner_id)
    if data.client_id is not None:
        existing = _by_client_id(session=session, project_id=project.id, client_id=data.client_id)
        if existing is not None:
            return existing, Written()
    now = utcnow()
    values = {
        "project_id": project.id,
        "name": data.name,
        "kind": "sdk",
        "config": data.config,
        "status": "running",
        "attempt": 1,
        "max_attempts": 1,
        "tags": data.tags,
        "owner_id": owner_id,
        "summary": {},
        "client_id": data.client_id,
        "provenance": data.provenance,
        "lease_until": now + timedelta(seconds=lease_seconds),
        "cancel_requested": False,
        "created_at": now,
        "updated_at": now,
        "started_at": now,
    }
    fresh = next_run_ids(session=session, count=1)
    if fresh:
        values["id"] = fresh[0]
    # One statement, ON CONFLICT DO NOTHING: two concurrent creates with one client_id make one run.
    insert = dialect_insert(session=session, table=Run.__table__).values(**values)
    if data.client_id is not None:
        insert = insert.on_conflict_do_nothing(index_elements=["project_id", "client_id"])
    new_id = session.execute(insert.returning(Run.__table__.c.id)).scalar_one_or_none()
    if new_id is None:  # lost the race to a concurrent create with the same client_id
        existing = _by_client_id(session=session, project_id=project.id, client_id=str(data.client_id))
        assert existing is not None
        return existing, Written()
    run = session.scalars(select(Run).where(Run.id == new_id)).one()
    return run, Written([status_event(session=session, run=run)])


def _by_client_id(*, session: Session, project_id: int, client_id: str) -> Run | None:
    stmt = select(Run).where(Run.project_id == project_id, Run.client_id == client_id)
    return session.scalars(stmt).unique().one_or_none()


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
    check_job_datasets(session=session, project=data.project, specs=specs)  # npz: a dataset of the project
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
    fresh = next_run_ids(session=session, count=len(runs))
    for run, run_id in zip(runs, fresh or [], strict=False):
        run.id = run_id
    session.add_all(runs)
    session.flush()
    return runs, Written([status_event(session=session, run=run) for run in runs])


def enqueue_runs(enqueue: Callable[[int], object], run_ids: list[int]) -> None:
    """Send committed job runs to the queue; a failure is logged (the sweeper re-sends them)."""
    for run_id in run_ids:
        try:
            enqueue(run_id)
        except Exception:
            log.exception("could not enqueue run %s; the sweeper will re-send it", run_id)


def submit_jobs(
    *,
    session: Session,
    data: JobSubmit | Sequence[JobSubmit],
    owner_id: int | None,
    max_attempts: int,
    publisher: Publisher,
    enqueue: Callable[[int], object],
) -> list[Run]:
    """The submit use case: create the runs (of one submission, or of several in one transaction),
    commit once, publish their status events, then enqueue them by id (after the commit, so that a
    worker always finds its run)."""
    created: list[Run] = []
    events = []
    for one in [data] if isinstance(data, JobSubmit) else data:
        runs, written = create_jobs(session=session, data=one, owner_id=owner_id, max_attempts=max_attempts)
        created.extend(runs)
        events.extend(written.events)
    session.commit()
    publish_events(publisher, events)
    enqueue_runs(enqueue, [run.id for run in created])
    return created
