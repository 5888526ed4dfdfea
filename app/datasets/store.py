"""Datasets in the database: listing and registering them (roles as for runs: viewers list, editors
add), the submit-time check of a job's ``dataset_id``, and the worker's claimed-run check.

Refusals never say more than "does not exist" about a dataset the caller may not see: a dataset of
another project reads exactly like a missing one.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.auth import roles
from app.datasets.models import Dataset
from app.datasets.schemas import DatasetPublic, DatasetReferenceIn, check_name
from app.errors import Conflict, InvalidInput, NotFound
from app.models import Project, Run, utcnow
from collapsewatch.contract import JobSpec

MAX_LISTED = 500
UPLOAD_HINT = "upload one on the new-job page or with POST /api/v1/datasets?project={project}&name=NAME"


def dataset_public(dataset: Dataset, project: str) -> DatasetPublic:
    summary: dict[str, Any] = dataset.summary or {}
    return DatasetPublic(
        id=dataset.id,
        project=project,
        name=dataset.name,
        kind="reference" if dataset.kind == "reference" else "upload",
        sha256=dataset.sha256,
        size_bytes=dataset.size_bytes,
        reference=dataset.reference,
        rows=summary.get("rows"),
        x_shape=summary.get("x_shape"),
        x_dtype=summary.get("x_dtype"),
        classes=summary.get("classes"),
        created_at=dataset.created_at,
    )


def project_name(*, session: Session, project_id: int) -> str:
    name = session.scalar(select(Project.name).where(Project.id == project_id))
    return str(name)


def list_datasets(*, session: Session, actor: roles.Actor, project: str) -> list[DatasetPublic]:
    """The project's datasets, newest first (viewers and up)."""
    found = roles.project_named(session=session, actor=actor, name=project, action="read")
    stmt = (
        select(Dataset)
        .where(Dataset.project_id == found.id)
        .order_by(Dataset.created_at.desc(), Dataset.id.desc())
        .limit(MAX_LISTED)
    )
    return [dataset_public(d, found.name) for d in session.scalars(stmt)]


def readable_datasets(*, session: Session, actor: roles.Actor) -> list[tuple[str, list[DatasetPublic]]]:
    """Every dataset the actor may read, grouped by project name (the job form's picker)."""
    stmt = select(Dataset, Project.name).join(Project, Project.id == Dataset.project_id)
    visible = roles.visible_project_ids(session=session, actor=actor)
    if visible is not None:
        stmt = stmt.where(Dataset.project_id.in_(visible))
    stmt = stmt.order_by(Project.name, Dataset.created_at.desc(), Dataset.id.desc()).limit(MAX_LISTED)
    groups: dict[str, list[DatasetPublic]] = {}
    for dataset, project in session.execute(stmt):
        groups.setdefault(project, []).append(dataset_public(dataset, project))
    return list(groups.items())


def get_dataset(*, session: Session, actor: roles.Actor, dataset_id: int) -> DatasetPublic:
    """One dataset for a reader of its project (404 for everyone else, as if it did not exist)."""
    missing = f"dataset {dataset_id} does not exist"
    row = session.execute(
        select(Dataset, Project.name)
        .join(Project, Project.id == Dataset.project_id)
        .where(Dataset.id == dataset_id)
    ).first()
    if row is None:
        raise NotFound(missing)
    dataset, project = row
    roles.check(session=session, actor=actor, project_id=dataset.project_id, action="read", missing=missing)
    return dataset_public(dataset, project)


def writable_project(*, session: Session, actor: roles.Actor, project: str) -> Project:
    """The project an editor adds a dataset to (404 if it does not exist or is not visible, 403 for
    viewers). Datasets never create projects: submit a job or use /projects first."""
    return roles.project_named(session=session, actor=actor, name=project, action="write")


def add_upload(
    *,
    session: Session,
    actor: roles.Actor,
    project: str,
    name: str,
    storage_name: str,
    sha256: str,
    size: int,
    summary: dict[str, Any],
) -> DatasetPublic:
    """Record a checked upload already moved into the store under ``storage_name``."""
    target = writable_project(session=session, actor=actor, project=project)
    dataset = Dataset(
        project_id=target.id,
        name=_name(name),
        kind="upload",
        storage_name=storage_name,
        sha256=sha256,
        size_bytes=size,
        summary=summary,
        created_by=actor.user_id,
        created_at=utcnow(),
    )
    session.add(dataset)
    session.flush()
    return dataset_public(dataset, target.name)


def add_reference(*, session: Session, actor: roles.Actor, data: DatasetReferenceIn) -> DatasetPublic:
    """Register ``root-name/relative/path`` with its sha256 (the server never reads the file). Admins
    only (DESIGN.md §6): data roots belong to worker hosts and every project trained there shares them."""
    target = writable_project(session=session, actor=actor, project=data.project)
    if not actor.is_admin:
        raise roles.Forbidden(
            "registering a dataset by reference needs an admin (data roots are shared by every project "
            "on a worker); upload the .npz instead (POST /api/v1/datasets), or ask an admin"
        )
    dataset = Dataset(
        project_id=target.id,
        name=data.name,
        kind="reference",
        reference=data.reference,
        sha256=data.sha256,
        size_bytes=data.size_bytes,
        summary={},
        created_by=actor.user_id,
        created_at=utcnow(),
    )
    session.add(dataset)
    session.flush()
    return dataset_public(dataset, target.name)


def _name(value: str) -> str:
    try:
        return check_name(value)
    except ValueError as exc:
        raise InvalidInput(["query", "name"], str(exc)) from exc


def check_job_datasets(*, session: Session, project: str, specs: Iterable[JobSpec]) -> None:
    """Submit time: every npz job names a dataset of ``project`` (404 otherwise, worded the same
    whether or not the id exists in another project)."""
    ids: set[int] = set()
    for spec in specs:
        if spec.dataset == "npz" and spec.dataset_id is None:
            raise InvalidInput(
                ["body", "spec", "dataset_id"],
                "required when dataset is 'npz': the id of a dataset of the project; "
                + UPLOAD_HINT.format(project=project),
            )
        if spec.dataset_id is not None:
            ids.add(spec.dataset_id)
    if not ids:
        return
    project_id = session.scalar(select(Project.id).where(Project.name == project))
    found: set[int] = set()
    if project_id is not None:
        stmt = select(Dataset.id).where(Dataset.id.in_(ids), Dataset.project_id == project_id)
        found = set(session.scalars(stmt))
    missing = sorted(ids - found)
    if missing:
        raise NotFound(
            f"spec.dataset_id: dataset {missing[0]} does not exist in project {project!r}; list its "
            f"datasets with GET /api/v1/datasets?project={project} or "
            + UPLOAD_HINT.format(project=project).removeprefix("upload one ")
        )


def dataset_for_worker(
    *, session: Session, actor: roles.Actor, dataset_id: int, run_id: int, attempt: int
) -> Dataset:
    """The dataset a worker may fetch: its token reaches run ``run_id`` (404 otherwise), ``attempt``
    holds the run (409 otherwise: claim it first), and the run's spec names this dataset of the
    run's project (404 otherwise, the same words whether or not the dataset exists)."""
    project_id = roles.check_run(session=session, actor=actor, run_id=run_id, action="ingest")
    run = session.get(Run, run_id)
    if run is None:  # deleted between the two reads
        raise NotFound(f"run {run_id} does not exist")
    if run.status != "running" or run.attempt != attempt:
        raise Conflict(
            f"run {run_id} is {run.status} at attempt {run.attempt}, not held by attempt {attempt}: "
            "a worker downloads a dataset only for a run it has claimed"
        )
    dataset = session.get(Dataset, dataset_id)
    named = (run.config or {}).get("dataset_id")
    if dataset is None or named != dataset_id or dataset.project_id != project_id:
        raise NotFound(f"run {run_id} has no dataset {dataset_id}")
    return dataset
