"""Wiring the job queue into the app: ``app.state.enqueue`` bound to the broker, and the
reaper/sweeper loop (:mod:`app.jobs.maintenance`) running while the app is up."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

from fastapi import FastAPI

from app.db import Database
from app.jobs.maintenance import LeaderLock, MaintenanceLoop, tick
from app.jobs.queue import JobQueue, make_enqueue
from app.runs.artifacts import CheckpointStore
from app.settings import Settings


def queue_prefix(settings: Settings) -> str:
    return settings.queue_prefix


def install(app: FastAPI) -> None:
    """Bind ``app.state.enqueue`` to this app's broker and database, and run the reaper/sweeper loop
    (:mod:`app.jobs.maintenance`) while the app is up, unless ``MAINTENANCE_INTERVAL_SECONDS=0``."""
    settings = app.state.settings
    database: Database = app.state.db
    queue = JobQueue(settings.broker_url, queue_prefix=queue_prefix(settings))
    app.state.job_queue = queue
    app.state.enqueue = make_enqueue(queue, database=database)
    if getattr(app.state, "checkpoints", None) is None:
        app.state.checkpoints = CheckpointStore.from_settings(settings)
    inner = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(asgi_app: Any) -> AsyncIterator[Any]:
        async with inner(asgi_app) as state:
            loop = start_maintenance(app)
            try:
                yield state
            finally:
                if loop is not None:
                    loop.stop()
                queue.close()

    app.router.lifespan_context = lifespan


def start_maintenance(app: FastAPI) -> MaintenanceLoop | None:
    """Start the leader-locked reaper/sweeper thread for ``app`` (None when disabled)."""
    settings: Settings = app.state.settings
    interval = settings.maintenance_interval_seconds
    if interval <= 0:
        return None
    sweep_after = timedelta(seconds=settings.sweep_after_seconds)
    database: Database = app.state.db

    def run_tick() -> object:
        return tick(
            database=database,
            queue=app.state.job_queue,
            store=app.state.checkpoints,
            sweep_after=sweep_after,
            publish=app.state.publisher.publish,
            trash_retention=settings.trash_retention,
        )

    loop = MaintenanceLoop(
        lock=LeaderLock(database, settings.database_url), interval=interval, run_tick=run_tick
    )
    loop.start()
    return loop
