"""Runs: SDK run creation and resumption, listing, one run, cancel."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request, Response

from app.api.access import CanReadRun, CanWriteRun, IngestSession, UserActorDep
from app.api.checkpoints import StoreDep
from app.auth import roles
from app.deps import RunId, SessionDep, SettingsDep, UserDep
from app.errors import InvalidInput
from app.runs import bulk, lifecycle, store, submit
from app.runs.bulk import RunsBulkIn, RunsBulkOut
from app.runs.events import publish
from app.runs.store import SORTS
from app.runs.visibility import Lifecycle
from collapsewatch.contract import RunCreate, RunPublic, RunStatus
from collapsewatch.contract_sdk import ConfigUpdateIn

router = APIRouter(prefix="/api/v1", tags=["runs"])
SORT_PATTERN = "^-?(" + "|".join(SORTS) + ")$"


@router.post("/runs", status_code=201, response_model=RunPublic, responses={200: {"model": RunPublic}})
def create_run(
    data: RunCreate,
    request: Request,
    response: Response,
    session: SessionDep,
    settings: SettingsDep,
    user: UserDep,
    actor: UserActorDep,
) -> RunPublic:
    """Create a run for the SDK (status running, attempt 1, a lease its heartbeats extend): editors, or
    anyone for a new project. A ``client_id`` already used in the project returns that run (200)."""
    roles.check_new_runs(session=session, actor=actor, project_name=data.project)
    run, written = submit.create_sdk_run(
        session=session, data=data, owner_id=user.user_id, lease_seconds=settings.lease_seconds
    )
    session.commit()
    publish(request, written.events)
    if not written.events:
        response.status_code = 200
    return store.run_public(run).model_copy(update={"lease_seconds": settings.lease_seconds})


@router.post("/runs/{run_id}/config", response_model=RunPublic)
def update_config(run_id: RunId, data: ConfigUpdateIn, session: IngestSession) -> RunPublic:
    """Merge keys into an SDK run's config (from its current attempt; a job's config is fixed: 409)."""
    run = lifecycle.update_config(session=session, run_id=run_id, data=data)
    answer = store.run_public(run)  # before the commit: reading after it would begin a second transaction
    session.commit()
    return answer


@router.post("/runs/{run_id}/resume", response_model=RunPublic)
def resume_run(
    run_id: RunId, request: Request, session: SessionDep, settings: SettingsDep, _can: CanWriteRun
) -> RunPublic:
    """Continue an SDK run (``crashed`` typically) as a new attempt: ``running`` again with a fresh
    lease; writes of older attempts get 409 from now on. Jobs answer 409 (re-run them instead)."""
    run, written = lifecycle.resume(session=session, run_id=run_id, lease_seconds=settings.lease_seconds)
    answer = store.run_public(run).model_copy(update={"lease_seconds": settings.lease_seconds})
    session.commit()  # the answer is built first: reading after the commit would begin a second transaction
    publish(request, written.events)
    return answer


@router.get("/runs", response_model=list[RunPublic])
def list_runs(
    session: SessionDep,
    actor: UserActorDep,
    response: Response,
    project: Annotated[str | None, Query(max_length=64)] = None,
    status: Annotated[list[RunStatus] | None, Query()] = None,
    sweep: Annotated[str | None, Query(max_length=32)] = None,
    tag: Annotated[str | None, Query(max_length=200)] = None,
    kind: Literal["job", "sdk"] | None = None,
    config: Annotated[
        list[str] | None,
        Query(max_length=10, description="KEY:VALUE (repeat): runs whose config KEY equals VALUE, as text"),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
    sort: Annotated[str, Query(pattern=SORT_PATTERN)] = "-created_at",
    lifecycle: Lifecycle = "live",
) -> list[RunPublic]:
    """Runs, newest first; the total matching count is in ``X-Total-Count``. ``provenance`` is only in
    the answer for one run (``GET /api/v1/runs/{id}``). ``lifecycle``: ``live`` (default) hides
    archived and deleted runs; ``archived``, ``all`` (live and archived) or ``trash`` (deleted)."""
    visible = roles.visible_project_ids(session=session, actor=actor)
    filt = store.RunFilter(
        project=project,
        status=status,
        sweep=sweep,
        tag=tag,
        kind=kind,
        config=config_pairs(config or []),
        project_ids=visible,
        lifecycle=lifecycle,
    )
    found, total = store.list_runs(session=session, filt=filt, limit=limit, offset=offset, sort=sort)
    response.headers["X-Total-Count"] = str(total)
    return [store.run_public(run, provenance=False) for run in found]


def config_pairs(raw: list[str]) -> list[tuple[str, str]]:
    """``KEY:VALUE`` query values as pairs; 422 naming ``config`` for one without a key."""
    pairs = []
    for item in raw:
        key, sep, value = item.partition(":")
        if not sep or not key.strip() or len(key) > 128:
            raise InvalidInput(["query", "config"], f"{item!r} is not KEY:VALUE (e.g. regularizer:svmax)")
        pairs.append((key.strip(), value))
    return pairs


@router.post("/run-actions", response_model=RunsBulkOut)
def bulk_runs(
    data: RunsBulkIn, session: SessionDep, actor: UserActorDep, checkpoints: StoreDep
) -> RunsBulkOut:
    """One action on up to 1,000 runs, all or none: ``tag`` / ``untag`` (with ``tags``), ``archive`` /
    ``unarchive``, ``delete`` (to the trash) / ``restore``, ``purge`` (runs in the trash, at once:
    owners). Editors and owners; unknown or unreadable runs 404, queued or running runs cannot be
    archived or deleted (409: cancel them first)."""
    answer = bulk.apply(session=session, actor=actor, data=data)
    session.commit()
    if data.action == "purge":
        bulk.remove_artifacts(checkpoints, answer.run_ids)
    return answer


@router.get("/runs/{run_id}", response_model=RunPublic)
def get_run(run_id: RunId, session: SessionDep, _can: CanReadRun) -> RunPublic:
    return store.run_public(store.get_run(session=session, run_id=run_id))


@router.post("/runs/{run_id}/cancel", response_model=RunPublic)
def cancel_run(run_id: RunId, request: Request, session: SessionDep, _can: CanWriteRun) -> RunPublic:
    """Queued: cancelled now. Running: ``cancel_requested`` until the worker stops. Finished: 409."""
    run, written = lifecycle.cancel(session=session, run_id=run_id)
    public = store.run_public(run)  # before the commit: a lazy load after it would begin a second
    session.commit()  # write transaction on this session
    publish(request, written.events)
    return public
