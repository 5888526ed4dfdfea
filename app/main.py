"""The ASGI application: ``create_app(settings)``; ``uvicorn app.main:app`` serves ``app``."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI

from app.api import accounts as accounts_api
from app.api import checkpoints, datasets, epochs, errors, events, export, jobs, reports, runs, series
from app.api.openapi import install as install_openapi
from app.auth.ratelimit import make_rate_limiter
from app.db import PG_ASYNC_POOL_SIZE, PING_AFTER_IDLE_S, Database
from app.deps import bearer_backend
from app.driver_pool import driver_pool_for
from app.jobs.install import install as install_queue
from app.live.pubsub import make_broker
from app.loop_sqlite import loop_sqlite_for
from app.pages import account, apidocs, auth, compare, run
from app.pages import jobs as jobs_page
from app.pages import projects as projects_page
from app.pages import reports as reports_page
from app.pages import runs as runs_page
from app.settings import Settings, get_settings
from app.web import static
from app.web.cookies import cookie_backend
from app.web.headers import SecurityHeadersMiddleware
from app.web.limits import install as install_body_limit
from app.web.log_redact import install as install_log_redaction
from app.web.memory import freeze_startup_objects, limit_arenas, trim_forever

log = logging.getLogger(__name__)
DATASET_UPLOAD_SUFFIX = "/datasets"
FORM_UPLOAD_PATH = "/jobs/datasets"
FORM_SLACK_BYTES = 1024 * 1024  # the multipart framing and the form's other fields

ROUTERS: list[APIRouter] = [
    # the JSON API (/api/v1); ingestion first: FastAPI matches a request against the included
    # routers in this order, and epoch PUTs and metric batches are most of the traffic
    epochs.router,
    runs.router,
    jobs.router,
    export.router,
    series.router,
    events.router,
    checkpoints.router,
    datasets.router,
    accounts_api.router,
    reports.router,
    # the dashboard: static files, then the pages
    static.router,
    auth.router,
    runs_page.router,
    run.router,
    jobs_page.router,
    compare.router,
    account.router,
    projects_page.router,
    reports_page.router,
    apidocs.router,  # /docs: the API reference, server-rendered (FastAPI's loads from a CDN)
]


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    db: Database = app.state.db
    limit_arenas(settings.malloc_arena_max)  # before the thread pool starts (app/memory.py)
    if settings.auto_migrate:
        from app.migrate import upgrade

        upgrade(db.engine)
    app.state.heavy_reads = (  # in this event loop (app/deps.py heavy_read_slot)
        asyncio.Semaphore(settings.heavy_read_concurrency) if settings.heavy_read_concurrency else None
    )
    freeze_startup_objects()  # full GC passes skip the start-up objects (app/memory.py)
    trimmer = (
        asyncio.create_task(trim_forever(settings.memory_trim_seconds))
        if settings.memory_trim_seconds
        else None
    )
    try:
        yield
    finally:
        if trimmer is not None:
            trimmer.cancel()
        close = getattr(app.state.publisher, "aclose", None)  # the Redis listener, if any
        if close is not None:
            await close()
        if app.state.driver_pool is not None:
            await app.state.driver_pool.aclose()
        if app.state.loop_sqlite is not None:
            app.state.loop_sqlite.close()
        close_limiter = getattr(app.state.rate_limiter, "close", None)  # its Redis connection, if any
        if close_limiter is not None:
            close_limiter()
        db.dispose()


def create_app(settings: Settings | None = None) -> FastAPI:
    """A configured app. Nothing touches the database until start-up (migrations run then)."""
    settings = settings or get_settings()
    app = FastAPI(title="collapsewatch", version="0.1.0", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.settings = settings
    app.state.db = Database(settings)
    # PostgreSQL: the event loop's own connections, for the one-statement epoch write (app.driver_pool)
    app.state.driver_pool = driver_pool_for(
        app.state.db.engine, size=PG_ASYNC_POOL_SIZE, ping_after_idle_s=PING_AFTER_IDLE_S
    )
    # SQLite: the event loop's own connection, for the same write in one transaction (app.loop_sqlite)
    app.state.loop_sqlite = loop_sqlite_for(app.state.db.engine)
    # in-process, or Redis pub/sub (app.live.pubsub)
    app.state.publisher = make_broker(settings.redis_url, prefix=settings.redis_prefix)
    # per API token / user, in-process or shared in Redis (app.auth.ratelimit); None = no limit
    app.state.rate_limiter = make_rate_limiter(settings)
    app.state.auth_backends = [
        bearer_backend,
        cookie_backend,
    ]  # cookie: app.web.cookies (browser sessions)
    errors.install(app)
    install_log_redaction()  # share-link and invite tokens never reach the logs (app/log_redact.py)
    # Uploads take more than MAX_BODY_BYTES (app/web/limits.py): checkpoints MAX_CHECKPOINT_BYTES,
    # datasets MAX_DATASET_BYTES (POST /api/v1/datasets and the form's POST /jobs/datasets; the
    # other job-page routes still refuse a declared body over MAX_BODY_BYTES by path).
    # The form's upload gets a form's worth of slack: its route counts the file itself and answers
    # with the form and the reason under the upload field, not a bare 413.
    form_upload = settings.max_dataset_bytes + FORM_SLACK_BYTES
    bigger = [
        (checkpoints.router, settings.max_checkpoint_bytes),
        (datasets.router, settings.max_dataset_bytes),
        (jobs_page.router, form_upload),
    ]
    for router in ROUTERS:
        limit = next((n for r, n in bigger if r is router), None)
        app.include_router(router, max_body_size=limit)
    install_queue(app)  # app.state.enqueue bound to the broker + the reaper/sweeper loop
    install_openapi(app)  # the shared error answers in /openapi.json (checked by tests/fuzz)
    # Starlette's body limit, inside the security headers; uploads have their own (app/web/limits.py)
    install_body_limit(
        app,
        settings.max_body_bytes,
        {
            "/checkpoint": settings.max_checkpoint_bytes,
            FORM_UPLOAD_PATH: form_upload,  # before the shorter suffix below, which it also ends with
            DATASET_UPLOAD_SUFFIX: settings.max_dataset_bytes,
        },
    )
    app.add_middleware(SecurityHeadersMiddleware)  # outermost: CSP, frame-ancestors, nosniff (app/headers.py)

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app


app = create_app()
