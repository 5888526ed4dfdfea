"""Celery tasks: thin wrappers over :mod:`worker.runner` (sent by name from the server)."""

from __future__ import annotations

from worker.celery_app import app
from worker.settings import TASK_NAME, get_worker_settings


@app.task(name=TASK_NAME, acks_late=False, ignore_result=True)
def train_run(run_id: int) -> str:
    """Claim run ``run_id`` and train it; a duplicate or stale message exits quietly."""
    from worker.runner import run_job

    return run_job(int(run_id), settings=get_worker_settings())
