"""The ASGI application: ``create_app(settings)``; ``uvicorn app.main:app`` serves ``app``.

Routers are listed in ``ROUTERS`` as "module:attribute"; an entry whose module does not exist yet
is skipped, so features can land module by module.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI

from app.api import errors
from app.api.common import default_enqueue
from app.db import Database
from app.deps import bearer_backend
from app.log_redact import install as install_log_redaction
from app.memory import freeze_startup_objects, limit_arenas, trim_forever
from app.middleware import BodyLimitMiddleware
from app.pubsub import make_broker
from app.ratelimit import RateLimiter
from app.settings import Settings, get_settings
from app.web import cookie_backend

log = logging.getLogger(__name__)

ROUTERS: list[str] = [
    "app.api.runs:router",
    "app.api.jobs:router",
    "app.api.epochs:router",
    "app.api.export:router",
    "app.api.series:router",
    "app.api.events:router",
    "app.api.checkpoints:router",
    "app.api.accounts:router",
    "app.api.reports:router",
    # The dashboard (issue 5): static files, then the pages.
    "app.web:router",
    "app.pages.auth:router",
    "app.pages.runs:router",
    "app.pages.run:router",
    "app.pages.jobs:router",
    "app.pages.compare:router",
    # Accounts, projects and reports (issue 6).
    "app.pages.account:router",
    "app.pages.projects:router",
    "app.pages.reports:router",
]


def _load_router(target: str) -> APIRouter | None:
    module_name, attribute = target.split(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name:
            raise
        return None
    router: APIRouter = getattr(module, attribute)
    return router


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
        db.dispose()


def create_app(settings: Settings | None = None) -> FastAPI:
    """A configured app. Nothing touches the database until start-up (migrations run then)."""
    settings = settings or get_settings()
    app = FastAPI(title="collapsewatch", version="0.1.0", lifespan=lifespan)
    app.state.settings = settings
    app.state.db = Database(settings)
    app.state.publisher = make_broker(settings.redis_url)  # in-process, or Redis pub/sub (app.pubsub)
    app.state.enqueue = default_enqueue(settings, app.state.db)  # tests inject a recorder
    app.state.rate_limiter = (  # per API token / user (app/ratelimit.py); None = no limit
        RateLimiter(settings.api_rate_limit_per_second, settings.api_rate_limit_burst)
        if settings.api_rate_limit_per_second
        else None
    )
    app.state.auth_backends = [bearer_backend, cookie_backend]  # cookie: app.web (browser sessions)
    errors.install(app)
    install_log_redaction()  # share-link and invite tokens never reach the logs (app/log_redact.py)
    for target in ROUTERS:
        router = _load_router(target)
        if router is not None:
            app.include_router(router)
    from app.queue import install as install_queue

    install_queue(app)  # app.state.enqueue bound to the broker + the reaper/sweeper loop
    from app.openapi_doc import install as install_openapi

    install_openapi(app)  # the shared error answers in /openapi.json (checked by tests/fuzz)
    # Checkpoint uploads enforce MAX_CHECKPOINT_BYTES themselves (app/api/checkpoints.py).
    app.add_middleware(
        BodyLimitMiddleware, max_bytes=settings.max_body_bytes, exempt_suffixes=("/checkpoint",)
    )
    from app.headers import SecurityHeadersMiddleware

    app.add_middleware(SecurityHeadersMiddleware)  # outermost: CSP, frame-ancestors, nosniff (app/headers.py)

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app


app = create_app()
