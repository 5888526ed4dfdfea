"""FastAPI dependencies, as typed aliases named for what you get (DESIGN.md §7)."""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from typing import Annotated

import anyio
from fastapi import Depends, HTTPException, Path, Request
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from app.auth import api_tokens, token_cache
from app.auth.ratelimit import Limiter, RateLimiter
from app.auth.tokens import Principal, hash_token
from app.db import Database
from app.settings import Settings

log = logging.getLogger(__name__)

AuthBackend = Callable[[Request], Principal | None]
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


async def get_settings_dep(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def database_of(request: Request) -> Database:
    db: Database = request.app.state.db
    return db


async def get_database(request: Request) -> Database:
    """The app's database. Dependencies that do no I/O are ``async def``: FastAPI runs a plain
    ``def`` dependency on the thread pool, a hop that costs more than the dependency itself."""
    return database_of(request)


@dataclass(frozen=True)
class RequestSession:
    """The request's session (``SessionDep``) while it is open, and whether it is a write session."""

    session: Session
    write: bool


async def get_session(request: Request) -> AsyncIterator[Session]:
    """One session (one transaction) per request; rolled back unless the route committed.

    ``async``: opening a session does no I/O (it takes a pooled connection at its first statement),
    and a plain ``def`` generator would cost two thread-pool hops per request, each of which waits
    for the GIL under load. Only a transaction that the route left open (a read, a failed write) is
    rolled back on a thread, shielded from cancellation so that its connection goes back to the pool.
    """
    async with request_scoped_session(request) as session:
        yield session


@asynccontextmanager
async def request_scoped_session(request: Request) -> AsyncIterator[Session]:
    """The body of :func:`get_session`, for a dependency that opens the request's session itself."""
    db = database_of(request)
    write = request.method not in READ_METHODS
    session = db.session(write=write)
    request.state.db_session = RequestSession(session, write)
    try:
        yield session
    finally:
        request.state.db_session = None
        if session.in_transaction():
            with anyio.CancelScope(shield=True):
                await run_in_threadpool(session.close)
        else:
            session.close()  # nothing held: no I/O


def request_session(request: Request) -> RequestSession | None:
    """The request's open session, if a dependency resolved before this one opened it."""
    found: RequestSession | None = getattr(request.state, "db_session", None)
    return found


@contextmanager
def lookup_session(request: Request) -> Iterator[Session]:
    """Where the credential lookups of the auth backends run.

    The request's own session when the route opened one first (it declares ``session: SessionDep``
    before its auth dependency): one transaction and one pooled connection per request, instead of
    a second connection with its own BEGIN and ROLLBACK (three fewer round trips on PostgreSQL,
    on every authenticated call). Otherwise a short read-only session of its own.
    """
    shared = request_session(request)
    if shared is not None:
        yield shared.session
        return
    with database_of(request).session(write=False) as session:
        yield session


@contextmanager
def side_write(request: Request) -> Iterator[Session]:
    """A small write made while authenticating (a token's last use, a local-mode sign-in).

    Inside the request's write session when there is one, committed with the request (on SQLite a
    second writer would wait for that session's lock); otherwise in a transaction of its own.
    """
    shared = request_session(request)
    if shared is not None and shared.write:
        yield shared.session
        return
    with database_of(request).transaction(write=True) as session:
        yield session


SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
SessionDep = Annotated[Session, Depends(get_session)]


async def heavy_read_slot(request: Request) -> AsyncIterator[None]:
    """Hold one of the process's ``HEAVY_READ_CONCURRENCY`` slots while a heavy read runs.

    Chart pages, series and exports are CPU-bound Python (rows into arrays, downsampling,
    templates, JSON). Under the GIL twenty of them at once finish no sooner than two at a time,
    but every one of them competes for the interpreter each time a short ingestion request comes
    back from a database round trip, and an epoch PUT makes ten. Queued here (in the event loop,
    holding no thread and no connection) they leave ingestion its latency. The slot is released
    when the route returns, before the body is sent (``scope="function"``), so a slow client
    cannot hold one.
    """
    slots: asyncio.Semaphore | None = getattr(request.app.state, "heavy_reads", None)
    if slots is None:
        yield
        return
    async with slots:
        yield


HEAVY_READ = Depends(heavy_read_slot, scope="function")  # route-level: dependencies=[HEAVY_READ]


def bearer_backend(request: Request) -> Principal | None:
    """``Authorization: Bearer cw_…`` -> the token's principal (None when absent)."""
    header = request.headers.get("authorization")
    if not header:
        return None
    token = _bearer_token(header)
    if token is None:
        raise _unauthorized("the Authorization header must be 'Bearer <token>'")
    cache = _token_cache(request)
    token_hash = hash_token(token)
    cached = cache.get(token_hash)
    if cached is not None:
        return cached
    since = token_cache.generation()
    with lookup_session(request) as session:
        resolved = api_tokens.resolve_token(session=session, token=token)
    if resolved is None:
        raise _unauthorized("invalid or revoked token; create one with `collapsewatch token create`")
    if resolved.needs_touch and resolved.principal.token_id is not None:
        _record_use(request, resolved.principal.token_id)  # not cached: the next call looks again
    elif not resolved.needs_touch:
        cache.put(token_hash, resolved.principal, fresh_for_s=resolved.touch_due_in_s, since=since)
    return resolved.principal


def _token_cache(request: Request) -> token_cache.TokenCache:
    cache: token_cache.TokenCache | None = getattr(request.app.state, "token_cache", None)
    if cache is None:
        cache = request.app.state.token_cache = token_cache.TokenCache()
    return cache


def _record_use(request: Request, token_id: int) -> None:
    """Set the token's ``last_used_at`` (at most once a minute, ``app.auth.api_tokens``)."""
    try:
        with side_write(request) as session:
            api_tokens.touch_token(session=session, token_id=token_id)
    except SQLAlchemyError:
        shared = request_session(request)
        if shared is not None and shared.write:  # the request's own transaction failed: so does it
            raise
        log.warning("could not record token use", exc_info=True)  # best effort otherwise


def _unauthorized(message: str) -> HTTPException:
    return HTTPException(401, detail=message, headers={"WWW-Authenticate": "Bearer"})


async def get_principal(request: Request) -> Principal:
    """The caller, from the first auth backend that recognises the request (401 if none does).

    A bearer token this process resolved a moment ago (``app.auth.token_cache``) is answered here, in
    the event loop: no database, and no trip to the thread pool (an ingestion request makes two more).
    Everything else (a lookup, a cookie session, Redis rate limits) runs in the thread pool.
    """
    cached: Principal | None = getattr(request.state, "principal", None)
    if cached is not None:
        return cached
    known = _recently_resolved(request)
    limiter = getattr(request.app.state, "rate_limiter", None)
    if known is not None and (limiter is None or isinstance(limiter, RateLimiter)):
        _rate_limit(request, known)  # in-process buckets: no I/O
        request.state.principal = known
        return known
    return await run_in_threadpool(_resolve_principal, request)


def _recently_resolved(request: Request) -> Principal | None:
    """The cached principal of a well-formed bearer token, when the bearer backend comes first."""
    backends: list[AuthBackend] = request.app.state.auth_backends
    token = _bearer_token(request.headers.get("authorization", ""))
    if not backends or backends[0] is not bearer_backend or token is None:
        return None
    return _token_cache(request).get(hash_token(token))


def _bearer_token(header: str) -> str | None:
    """The token of ``Bearer <token>``; None for any other header."""
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def _resolve_principal(request: Request) -> Principal:
    cached: Principal | None = getattr(request.state, "principal", None)
    if cached is not None:
        return cached
    backends: list[AuthBackend] = request.app.state.auth_backends
    for backend in backends:
        principal = backend(request)
        if principal is not None:
            _rate_limit(request, principal)
            request.state.principal = principal
            return principal
    raise _unauthorized("authentication required: send 'Authorization: Bearer <token>'")


def current_principal(request: Request) -> Principal | None:
    """The caller as the auth backends resolve the request's credential now, or None when none does
    (a token revoked, a browser session ended): what an open stream re-checks (``app.api.access``).
    Not this request's remembered answer, and no rate limit. Blocking: call it in a thread."""
    backends: list[AuthBackend] = request.app.state.auth_backends
    for backend in backends:
        try:
            principal = backend(request)
        except HTTPException:
            return None
        if principal is not None:
            return principal
    return None


def _rate_limit(request: Request, principal: Principal) -> None:
    """429 once the caller's bucket is empty (``app.auth.ratelimit``): per API token, else per user."""
    limiter: Limiter | None = getattr(request.app.state, "rate_limiter", None)
    if limiter is None:
        return
    key = ("token", principal.token_id) if principal.token_id is not None else ("user", principal.user_id)
    wait = limiter.acquire(key)
    if wait > 0:
        raise HTTPException(
            429,
            detail=(
                f"rate limit: at most {limiter.per_second:g} requests/s ({limiter.burst} at once) per caller "
                f"(API_RATE_LIMIT_PER_SECOND, API_RATE_LIMIT_BURST); retry after {wait:.2f} s"
            ),
            headers={"Retry-After": str(max(1, math.ceil(wait)))},
        )


PrincipalDep = Annotated[Principal, Depends(get_principal)]


async def get_user(principal: PrincipalDep) -> Principal:
    """A user (not a worker token): worker tokens may only ingest."""
    if principal.is_worker:
        raise HTTPException(403, detail="worker tokens may only call the ingestion and lifecycle routes")
    return principal


UserDep = Annotated[Principal, Depends(get_user)]


MAX_ID = 2**31 - 1
RunId = Annotated[int, Path(ge=1, le=MAX_ID, description="run id")]
