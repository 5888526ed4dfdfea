"""Typed FastAPI dependencies that apply ``app.auth.roles`` to the run in the path.

A route adds e.g. ``_: CanReadRun`` next to its ``run_id: RunId``: the dependency reads the same
path parameter, checks the caller's role in the run's project and raises 404/403 before the
route body runs. They share the request's session (FastAPI caches ``SessionDep`` per request).
The ingestion routes take ``session: IngestSession`` instead: the session and the check in one.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing
from functools import partial
from typing import Annotated

from fastapi import Depends, Request
from pydantic import Field, TypeAdapter, ValidationError
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from app.auth import roles, token_cache
from app.auth.access_cache import AccessCache, key_of
from app.db import Database
from app.deps import (
    MAX_ID,
    PrincipalDep,
    RunId,
    SessionDep,
    UserDep,
    current_principal,
    get_database,
    get_principal,
    request_scoped_session,
)

# an open SSE stream re-checks its caller this often (app.auth.token_cache's freshness)
ACCESS_RECHECK_S = 5.0


async def get_actor(principal: PrincipalDep) -> roles.Actor:
    return roles.Actor.of(principal)


async def get_user_actor(principal: UserDep) -> roles.Actor:
    return roles.Actor.of(principal)


ActorDep = Annotated[roles.Actor, Depends(get_actor)]
DatabaseDep = Annotated[Database, Depends(get_database)]
UserActorDep = Annotated[roles.Actor, Depends(get_user_actor)]


def can_read_run(run_id: RunId, session: SessionDep, actor: UserActorDep) -> int:
    return roles.check_run(session=session, actor=actor, run_id=run_id, action="read")


def can_write_run(run_id: RunId, session: SessionDep, actor: UserActorDep) -> int:
    return roles.check_run(session=session, actor=actor, run_id=run_id, action="write")


async def ingest_session(request: Request) -> AsyncIterator[Session]:
    """The request's session, for a caller that may ingest into the run in the path.

    ``session: SessionDep`` and an ingestion access check as ONE dependency: epoch PUTs, metric
    batches and heartbeats are most of the traffic, and FastAPI's work per dependency node (four
    parameter passes and a cache key on every request) for the five nodes those two made was the
    largest cost of an epoch PUT after the write itself (issue 19). Same order and answers as the
    two: the session opens first (credential lookups share it, ``app.deps.lookup_session``), then
    the caller is resolved (401, 429), then the caller's access to the run (404, 403). A path run
    id that is not a valid ``RunId`` is not looked up: the route's own ``run_id: RunId`` answers 422.

    A caller that passed the check for this run a moment ago is answered in the event loop
    (``app.auth.access_cache``: no query, no thread-pool trip); the write itself still checks the
    run's state and the attempt.
    """
    async with request_scoped_session(request) as session:
        actor = roles.Actor.of(await get_principal(request))
        run_id = _path_run_id(request)
        if run_id is not None:
            await _check_ingest(request, session, actor, run_id)
        yield session


_RUN_ID: TypeAdapter[int] = TypeAdapter(Annotated[int, Field(ge=1, le=MAX_ID)])


def _path_run_id(request: Request) -> int | None:
    """The path's run id when it is a valid ``RunId`` (the same constraints, the same lax parsing)."""
    try:
        return _RUN_ID.validate_python(request.path_params.get("run_id"))
    except ValidationError:
        return None


async def _check_ingest(request: Request, session: Session, actor: roles.Actor, run_id: int) -> int:
    cache = _access_cache(request)
    key = key_of(actor, run_id)
    known = cache.get(key)
    if known is not None:
        return known
    since = token_cache.generation()
    check = partial(roles.check_run, session=session, actor=actor, run_id=run_id, action="ingest")
    project_id = await run_in_threadpool(check)
    cache.put(key, project_id, since=since)
    return project_id


def _access_cache(request: Request) -> AccessCache:
    cache: AccessCache | None = getattr(request.app.state, "access_cache", None)
    if cache is None:
        cache = request.app.state.access_cache = AccessCache()
    return cache


def can_ingest_run_db(run_id: RunId, database: DatabaseDep, actor: ActorDep) -> int:
    """For routes without a request session (streaming uploads): a short read-only session."""
    with database.session(write=False) as session:
        return roles.check_run(session=session, actor=actor, run_id=run_id, action="ingest")


CanReadRun = Annotated[int, Depends(can_read_run)]
CanWriteRun = Annotated[int, Depends(can_write_run)]
IngestSession = Annotated[Session, Depends(ingest_session)]
CanIngestRunDb = Annotated[int, Depends(can_ingest_run_db)]


def can_read_run_db(run_id: RunId, database: DatabaseDep, actor: UserActorDep) -> int:
    with database.session(write=False) as session:
        return roles.check_run(session=session, actor=actor, run_id=run_id, action="read")


CanReadRunDb = Annotated[int, Depends(can_read_run_db)]


def _readable(database: Database, actor: roles.Actor, run_id: int) -> bool:
    with database.session(write=False) as session:
        return bool(roles.readable_run_ids(session=session, actor=actor, run_ids=[run_id]))


async def guarded_frames(
    request: Request,
    actor: roles.Actor,
    frames: AsyncGenerator[bytes, None],
    *,
    run_id: int | None = None,
) -> AsyncIterator[bytes]:
    """An SSE stream's ``frames`` for as long as the caller may read them.

    Access is checked when a stream opens, but a stream stays open for hours: every
    ``ACCESS_RECHECK_S`` (before the next frame goes out: an event or a keep-alive) the caller is
    resolved again from its credential, as a new request would be, and the stream ends once its
    token is revoked, its browser session ended, or (``run_id``) the run is no longer readable to it:
    a member removed, the run purged. EventSource then reconnects and gets the 401 or 404. On the
    all-runs stream (no ``run_id``) the frames of runs the caller may not read are dropped (``data:
    {..., "run_id": N}``), each run decided once per re-check."""
    database: Database = request.app.state.db
    known: dict[int, bool] = {}
    checked = time.monotonic()
    async with aclosing(frames):
        async for frame in frames:
            if time.monotonic() - checked >= ACCESS_RECHECK_S:
                current = await run_in_threadpool(_current_actor, request, actor)
                if current is None:
                    return
                if run_id is not None and not await run_in_threadpool(_readable, database, current, run_id):
                    return
                actor, checked = current, time.monotonic()
                known.clear()
            if run_id is None and not actor.is_admin:
                frame_run = _frame_run(frame)
                if frame_run is not None:
                    if frame_run not in known:
                        known[frame_run] = await run_in_threadpool(_readable, database, actor, frame_run)
                    if not known[frame_run]:
                        continue
            yield frame


def _current_actor(request: Request, before: roles.Actor) -> roles.Actor | None:
    """The caller as its credential resolves now (``before``'s user still), or None."""
    principal = current_principal(request)
    if principal is None or principal.user_id != before.user_id or principal.is_worker:
        return None
    return roles.Actor.of(principal)


def _frame_run(frame: bytes) -> int | None:
    for line in frame.split(b"\n"):
        if line.startswith(b"data: "):
            try:
                value = json.loads(line[6:]).get("run_id")
            except (ValueError, AttributeError):
                return None
            return value if isinstance(value, int) else None
    return None
