"""Seeding helpers for the compare tests (imported as ``comparekit``): sweeps, epochs, SDK scalars
and wall-clock times, written through the same services the API runs."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from apikit import STATS
from sqlalchemy import update

from app.db import Database
from app.models import Epoch, Run
from app.runs import lifecycle, submit
from app.series import epochs, metrics
from collapsewatch.contract import EpochIn, JobSubmit, RunCreate


def sweep(db: Database, grid: dict[str, list[Any]], seeds: list[int]) -> tuple[str, list[int]]:
    """Submit a grid x seeds and claim every run (status running, attempt 1)."""
    data = JobSubmit(project="default", spec={"epochs": 3}, sweep=grid, seeds=seeds)
    with db.transaction() as session:
        created, _ = submit.create_jobs(session=session, data=data, owner_id=None, max_attempts=3)
        ids = [r.id for r in created]
        sweep_id = created[0].sweep_id
    for run_id in ids:
        with db.transaction() as session:
            won = lifecycle.claim(session=session, run_id=run_id, worker={"host": "t"}, lease_seconds=600)
            assert won.run is not None, won.message
    assert sweep_id is not None
    return sweep_id, ids


def epoch(db: Database, run_id: int, n: int, *, mean_sv: float, acc: float = 0.5) -> None:
    stats = STATS | {"mean_sv": mean_sv}
    data = EpochIn(attempt=1, metrics={"val_acc": acc, "train_loss": 1.0 / (n + 1)}, stats=stats)  # type: ignore[arg-type]
    with db.transaction() as session:
        epochs.put_epoch(session=session, run_id=run_id, epoch=n, data=data)


def config_of(db: Database, run_id: int) -> dict[str, Any]:
    with db.session(write=False) as session:
        run = session.get(Run, run_id)
        assert run is not None
        return dict(run.config)


def sdk_run(db: Database, config: dict[str, Any], loss: dict[int, float]) -> int:
    """An SDK run with ``config`` that logged the scalar ``loss`` at the given steps."""
    with db.transaction() as session:
        run, _ = submit.create_sdk_run(
            session=session, data=RunCreate(project="default", config=config), owner_id=None
        )
        steps = list(loss)
        metrics.write_metrics(
            session=session, run_id=run.id, attempt=1, keys=["loss"] * len(steps), steps=steps,
            values=[loss[s] for s in steps],
        )  # fmt: skip
        return run.id


def set_clock(db: Database, run_id: int, started: datetime, seconds_per_epoch: float) -> None:
    """The run started at ``started``; epoch n was recorded (n + 1) * ``seconds_per_epoch`` later."""
    with db.transaction() as session:
        session.execute(update(Run).where(Run.id == run_id).values(started_at=started))
        for (n,) in session.execute(
            Epoch.__table__.select().with_only_columns(Epoch.epoch).where(Epoch.run_id == run_id)
        ).all():
            when = started + timedelta(seconds=(n + 1) * seconds_per_epoch)
            session.execute(
                update(Epoch).where(Epoch.run_id == run_id, Epoch.epoch == n).values(recorded_at=when)
            )
