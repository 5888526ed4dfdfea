"""The trash's retention: the maintenance tick purges runs deleted longer ago than
TRASH_RETENTION_DAYS, with their rows and checkpoints, and leaves everything else alone."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from app.db import Database
from app.jobs.maintenance import tick
from app.jobs.queue import JobQueue
from app.models import Epoch, Run, utcnow
from app.runs.artifacts import CheckpointStore
from app.runs.submit import ensure_project
from app.settings import Settings


def add_run(database: Database, **values: Any) -> int:
    now = utcnow()
    with database.transaction() as session:
        project = ensure_project(session=session, name="default", owner_id=None)
        run = Run(
            project=project, kind="job", status="succeeded", config={}, summary={}, tags=[],
            created_at=now, updated_at=now, **values,
        )  # fmt: skip
        session.add(run)
        session.flush()
        session.add(Epoch(run_id=run.id, epoch=0, attempt=1, metrics={}, recorded_at=now))
        return run.id


def remaining(database: Database) -> tuple[list[int], int]:
    with database.session(write=False) as session:
        ids = list(session.scalars(select(Run.id).order_by(Run.id)))
        return ids, int(session.scalar(select(func.count()).select_from(Epoch)) or 0)


def test_tick_purges_runs_deleted_before_the_retention_with_their_checkpoints(
    database: Database, tmp_path: Path
) -> None:
    now = utcnow()
    old = add_run(database, deleted_at=now - timedelta(days=31))
    recent = add_run(database, deleted_at=now - timedelta(days=29))
    archived = add_run(database, archived_at=now - timedelta(days=400))
    live = add_run(database)
    store = CheckpointStore(tmp_path / "artifacts", max_bytes=1 << 20)
    for run_id in (old, recent, archived, live):
        store.write_bytes(run_id, 1, 0, b"weights")
    queue = JobQueue(f"sqla+sqlite:///{tmp_path / 'broker.db'}", queue_prefix="trash-")
    try:
        for _ in range(2):  # a second tick finds nothing more to purge
            tick(
                database=database, queue=queue, store=store, sweep_after=timedelta(minutes=1),
                trash_retention=timedelta(days=30),
            )  # fmt: skip
        assert remaining(database) == ([recent, archived, live], 3)
        assert store.stored_run_ids() == [recent, archived, live]
        tick(database=database, queue=queue, store=store, sweep_after=timedelta(minutes=1))
        assert remaining(database)[0] == [recent, archived, live]  # no retention given: kept
    finally:
        queue.close()


def test_trash_retention_setting_defaults_to_30_days_and_0_keeps_forever() -> None:
    assert Settings(_env_file=None).trash_retention == timedelta(days=30)  # type: ignore[call-arg]
    assert Settings(trash_retention_days=0, _env_file=None).trash_retention is None  # type: ignore[call-arg]
