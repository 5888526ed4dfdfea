"""Checkpoint routes: the worker uploads one per epoch, the next attempt downloads the newest.

``PUT /api/v1/runs/{id}/checkpoint?attempt=&epoch=`` takes the raw bytes (``application/octet-stream``,
at most ``MAX_CHECKPOINT_BYTES``, else 413) from the run's current attempt only (else 409);
``GET /api/v1/runs/{id}/checkpoint`` returns the newest one with ``X-Checkpoint-Epoch`` and
``X-Checkpoint-Attempt`` headers (404 when there is none). The server never unpickles them.
"""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse

from app.api.access import CanIngestRunDb
from app.db import Database
from app.deps import get_database
from app.errors import NotFound
from app.runs.artifacts import CheckpointStore, CheckpointTooLarge
from app.runs.storage import NotStored
from app.runs.store import get_run, writable_run
from app.settings import Settings
from collapsewatch.contract_reads import MAX_ATTEMPT

log = logging.getLogger(__name__)
router = APIRouter(prefix="/api/v1/runs", tags=["checkpoints"])
CHECKPOINT_PATH_SUFFIX = "/checkpoint"


def checkpoint_store(request: Request) -> CheckpointStore:
    """The app's store (``app.state.checkpoints``), created from the settings on first use."""
    store: CheckpointStore | None = getattr(request.app.state, "checkpoints", None)
    if store is None:
        settings: Settings = request.app.state.settings
        store = CheckpointStore.from_settings(settings)
        request.app.state.checkpoints = store
    return store


StoreDep = Annotated[CheckpointStore, Depends(checkpoint_store)]
DatabaseDep = Annotated[Database, Depends(get_database)]


def _check_writer(database: Database, run_id: int, attempt: int) -> None:
    with database.session(write=False) as session:
        writable_run(session=session, run_id=run_id, attempt=attempt)


def _check_exists(database: Database, run_id: int) -> None:
    with database.session(write=False) as session:
        get_run(session=session, run_id=run_id)


@router.put("/{run_id}/checkpoint", status_code=201)
async def put_checkpoint(
    run_id: int,
    request: Request,
    _can: CanIngestRunDb,
    database: DatabaseDep,
    store: StoreDep,
    attempt: Annotated[int, Query(ge=1, le=MAX_ATTEMPT, description="the uploading attempt (fencing)")],
    epoch: Annotated[int, Query(ge=0, le=10_000_000, description="the epoch the checkpoint follows")],
) -> JSONResponse:
    """Store the checkpoint of ``epoch`` for ``attempt`` (409 if that attempt is not current)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > store.max_bytes:
        return _too_large(store.max_bytes)
    await run_in_threadpool(_check_writer, database, run_id, attempt)
    try:
        stored = await store.write_stream(run_id, attempt, epoch, request.stream())
    except CheckpointTooLarge as exc:
        return _too_large(exc.limit)
    except OSError as exc:  # disk full, read-only ARTIFACT_DIR, S3 unreachable: the server stays up
        # unless the run finished or was purged meanwhile (its folder went with it): that is the answer
        await run_in_threadpool(_check_writer, database, run_id, attempt)
        log.error("could not store a checkpoint of run %s: %s", run_id, exc)
        return _not_stored(exc)
    # Fenced again after the write: a newer attempt may have claimed the run meanwhile (its own
    # checkpoints sort after this one, so they are never shadowed).
    await run_in_threadpool(_check_writer, database, run_id, attempt)
    return JSONResponse({"run_id": run_id, "attempt": attempt, "epoch": epoch, "size": stored.size}, 201)


@router.get("/{run_id}/checkpoint", response_class=StreamingResponse, response_model=None)
def get_checkpoint(
    run_id: int, _can: CanIngestRunDb, database: DatabaseDep, store: StoreDep
) -> FileResponse | StreamingResponse:
    """The newest checkpoint's bytes; 404 when the run has none."""
    _check_exists(database, run_id)
    stored = store.latest(run_id)
    if stored is None:
        raise NotFound(f"run {run_id} has no checkpoint yet")
    headers = {"X-Checkpoint-Epoch": str(stored.epoch), "X-Checkpoint-Attempt": str(stored.attempt)}
    if stored.path is not None:  # the local store: the file itself
        return FileResponse(stored.path, media_type="application/octet-stream", headers=headers)
    headers["Content-Length"] = str(stored.size)
    try:  # an S3 store: stream the object (opened here, so a vanished one is still a 404)
        chunks = store.read(stored)
    except NotStored:
        raise NotFound(f"run {run_id} has no checkpoint yet") from None
    return StreamingResponse(chunks, media_type="application/octet-stream", headers=headers)


def _not_stored(exc: OSError) -> JSONResponse:
    reason = exc.strerror or type(exc).__name__
    message = (
        f"the server could not store the checkpoint ({reason}); "
        "free space in ARTIFACT_DIR or make it writable (or check ARTIFACT_STORE's bucket)"
    )
    return JSONResponse({"detail": message, "message": message}, status_code=507)


def _too_large(limit: int) -> JSONResponse:
    message = f"checkpoint is larger than {limit} bytes; raise MAX_CHECKPOINT_BYTES or save less state"
    return JSONResponse({"detail": message, "message": message}, status_code=413)
