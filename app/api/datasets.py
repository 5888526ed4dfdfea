"""Datasets of a project (DESIGN.md §5, §6): jobs name one by id, never a file path.

``GET  /api/v1/datasets?project=``            the project's datasets (viewers)
``POST /api/v1/datasets?project=&name=``      upload an .npz, the raw file as the body (editors);
                                              checked before it is accepted, at most MAX_DATASET_BYTES
``POST /api/v1/dataset-references``           register ``root-name/relative/path.npz`` under a worker
                                              data root, with its sha256 (editors)
``GET  /api/v1/datasets/{id}``                one dataset; a worker token adds ``run`` and ``attempt``
``GET  /api/v1/datasets/{id}/content?run=&attempt=``  the uploaded bytes, for the worker holding the run

Example: ``curl -X POST --data-binary @train.npz -H 'Content-Type: application/octet-stream'
-H "Authorization: Bearer $TOKEN" 'http://127.0.0.1:8000/api/v1/datasets?project=default&name=train'``.
"""

from __future__ import annotations

import logging
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, JSONResponse

from app.api.access import ActorDep, DatabaseDep, UserActorDep
from app.auth.roles import Actor
from app.datasets import store
from app.datasets.files import DatasetFiles, DatasetTooLarge, Received
from app.datasets.schemas import PROJECT_PATTERN, DatasetPublic, DatasetReferenceIn, check_name
from app.datasets.uploads import accept_upload
from app.datasets.validate import InvalidDataset
from app.db import Database
from app.deps import MAX_ID, SessionDep
from app.errors import Conflict, InvalidInput, NotFound
from app.settings import Settings

log = logging.getLogger(__name__)
router = APIRouter(prefix="/api/v1", tags=["datasets"])
DatasetId = Annotated[int, Path(ge=1, le=MAX_ID, description="dataset id")]
ProjectQuery = Annotated[str, Query(pattern=PROJECT_PATTERN, description="project name")]
RunQuery = Annotated[int | None, Query(ge=1, le=MAX_ID, description="worker tokens: the claimed run")]
AttemptQuery = Annotated[int | None, Query(ge=1, le=MAX_ID, description="worker tokens: its attempt")]


def dataset_files(request: Request) -> DatasetFiles:
    settings: Settings = request.app.state.settings
    return DatasetFiles(settings.artifact_dir, max_bytes=settings.max_dataset_bytes)


FilesDep = Annotated[DatasetFiles, Depends(dataset_files)]


@router.get("/datasets", response_model=list[DatasetPublic])
def list_datasets(project: ProjectQuery, session: SessionDep, actor: UserActorDep) -> list[DatasetPublic]:
    """The project's datasets, newest first."""
    return store.list_datasets(session=session, actor=actor, project=project)


UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "description": "the .npz file itself (numpy.savez with arrays x and y)",
        "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
    }
}


@router.post("/datasets", status_code=201, response_model=DatasetPublic, openapi_extra=UPLOAD_BODY)
async def upload_dataset(
    request: Request,
    project: ProjectQuery,
    name: Annotated[str, Query(min_length=1, max_length=200, description="a display name")],
    database: DatabaseDep,
    actor: UserActorDep,
    files: FilesDep,
) -> Any:
    """Store an ``.npz`` (arrays ``x`` and ``y``) sent as the body; 422/413 naming the field otherwise."""
    try:
        name = check_name(name)
    except ValueError as exc:
        raise InvalidInput(["query", "name"], str(exc)) from exc
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > files.max_bytes:
        return _refused(413, str(DatasetTooLarge(files.max_bytes)))
    await run_in_threadpool(_check_editor, database, actor, project)  # before reading the body
    try:
        received = await files.receive_stream(request.stream())
    except DatasetTooLarge as exc:
        return _refused(413, str(exc))
    except OSError as exc:  # disk full, read-only ARTIFACT_DIR: the server stays up
        log.error("could not store an uploaded dataset: %s", exc)
        return _refused(
            507, f"the server could not store the file ({exc.strerror}); free space in ARTIFACT_DIR"
        )
    try:
        dataset = await run_in_threadpool(_accept, database, files, actor, project, name, received)
    except InvalidDataset as exc:
        return _invalid(exc)
    return JSONResponse(dataset.model_dump(mode="json"), status_code=201)


def _check_editor(database: Database, actor: Actor, project: str) -> None:
    with database.session(write=False) as session:
        store.writable_project(session=session, actor=actor, project=project)


def _accept(
    database: Database, files: DatasetFiles, actor: Actor, project: str, name: str, received: Received
) -> DatasetPublic:
    def record(storage_name: str, summary: dict[str, Any]) -> DatasetPublic:
        with database.transaction(write=True) as session:
            return store.add_upload(
                session=session,
                actor=actor,
                project=project,
                name=name,
                storage_name=storage_name,
                sha256=received.sha256,
                size=received.size,
                summary=summary,
            )

    return accept_upload(received, files=files, record=record)


@router.post("/dataset-references", status_code=201, response_model=DatasetPublic)
def register_reference(data: DatasetReferenceIn, session: SessionDep, actor: UserActorDep) -> DatasetPublic:
    """A dataset too big to upload, as ``root-name/relative/path.npz`` under a data root that the
    worker hosts configure (``COLLAPSEWATCH_DATA_ROOTS``); workers check its sha256 before training."""
    dataset = store.add_reference(session=session, actor=actor, data=data)
    session.commit()
    return dataset


@router.get("/datasets/{dataset_id}", response_model=DatasetPublic)
def get_dataset(
    dataset_id: DatasetId,
    session: SessionDep,
    actor: ActorDep,
    run: RunQuery = None,
    attempt: AttemptQuery = None,
) -> DatasetPublic:
    """One dataset: for its project's readers, or for a worker token holding ``run`` at ``attempt``."""
    if not actor.is_worker:
        return store.get_dataset(session=session, actor=actor, dataset_id=dataset_id)
    run_id, run_attempt = _worker_params(run, attempt)
    dataset = store.dataset_for_worker(
        session=session, actor=actor, dataset_id=dataset_id, run_id=run_id, attempt=run_attempt
    )
    return store.dataset_public(dataset, store.project_name(session=session, project_id=dataset.project_id))


@router.get("/datasets/{dataset_id}/content", response_class=FileResponse)
def dataset_content(
    dataset_id: DatasetId,
    database: DatabaseDep,
    actor: ActorDep,
    files: FilesDep,
    run: RunQuery = None,
    attempt: AttemptQuery = None,
) -> FileResponse:
    """The uploaded file, for the worker that holds the run naming it (``X-Dataset-Sha256`` header)."""
    if not actor.is_worker:
        raise HTTPException(
            403, detail="dataset contents are sent to worker tokens only, for a run they have claimed"
        )
    run_id, run_attempt = _worker_params(run, attempt)
    with database.session(write=False) as session:
        dataset = store.dataset_for_worker(
            session=session, actor=actor, dataset_id=dataset_id, run_id=run_id, attempt=run_attempt
        )
    if dataset.kind != "upload" or dataset.storage_name is None:
        raise Conflict(
            f"dataset {dataset_id} is a reference ({dataset.reference}): a worker reads it under its own "
            "data root (COLLAPSEWATCH_DATA_ROOTS); there is nothing to download"
        )
    path = files.path(dataset.storage_name)
    if not path.is_file():
        raise NotFound(
            f"the stored file of dataset {dataset_id} is missing from the artifact store; upload it again"
        )
    headers = {"X-Dataset-Sha256": dataset.sha256, "X-Dataset-Id": str(dataset.id)}
    return FileResponse(path, media_type="application/octet-stream", headers=headers)


def _worker_params(run: int | None, attempt: int | None) -> tuple[int, int]:
    """A worker token reaches a dataset only through the run it holds: ``run`` and ``attempt``."""
    if run is None or attempt is None:
        raise HTTPException(
            403,
            detail="a worker token reads a dataset only for a run it has claimed: add run=ID&attempt=N",
        )
    return run, attempt


def _invalid(exc: InvalidDataset) -> JSONResponse:
    items = [{"loc": ["body", exc.field], "msg": exc.message, "type": "value_error"}]
    message = f"{exc.field}: {exc.message}"
    if exc.status_code == 422:
        return JSONResponse({"detail": items, "message": message}, status_code=422)
    return _refused(exc.status_code, message)


def _refused(status_code: int, message: str) -> JSONResponse:
    return JSONResponse({"detail": message, "message": message}, status_code=status_code)
