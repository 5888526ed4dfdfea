"""Concurrent writers (threads, separate sessions) against a real database file / server."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from apikit import STATS
from sqlalchemy import func, select

from app.db import Database
from app.models import Epoch, Metric
from app.runs import lifecycle, submit
from app.series import epochs, metrics
from collapsewatch.contract import EpochIn, JobSubmit, RunCreate

THREADS = 6


def _in_threads(target: Callable[[int], Any], count: int = THREADS) -> list[BaseException]:
    errors: list[BaseException] = []
    barrier = threading.Barrier(count)

    def work(i: int) -> None:
        barrier.wait()
        try:
            target(i)
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return errors


def _sdk_runs(database: Database, count: int) -> list[int]:
    with database.transaction() as session:
        made = [
            submit.create_sdk_run(session=session, data=RunCreate(project="p"), owner_id=None)[0]
            for _ in range(count)
        ]
        return [run.id for run in made]


def test_writers_when_many_threads_write_different_runs_all_succeed(database: Database) -> None:
    run_ids = _sdk_runs(database, THREADS)
    epochs_per_run = 15

    def write(i: int) -> None:
        for epoch in range(epochs_per_run):
            with database.transaction() as session:
                data = EpochIn.model_validate(
                    {"attempt": 1, "metrics": {"val_acc": epoch / 10}, "stats": STATS}
                )
                epochs.put_epoch(session=session, run_id=run_ids[i], epoch=epoch, data=data)
            with database.transaction() as session:
                steps = [epoch * 10 + k for k in range(10)]
                metrics.write_metrics(
                    session=session, run_id=run_ids[i], attempt=1, keys=["loss"] * 10, steps=steps,
                    values=[1.0] * 10,
                )  # fmt: skip

    assert _in_threads(write) == []
    with database.session(write=False) as session:
        assert session.scalar(select(func.count()).select_from(Epoch)) == THREADS * epochs_per_run
        assert session.scalar(select(func.count()).select_from(Metric)) == THREADS * epochs_per_run * 10


def test_writers_when_same_epoch_replayed_concurrently_store_one_row(database: Database) -> None:
    [run_id] = _sdk_runs(database, 1)

    def write(_i: int) -> None:
        with database.transaction() as session:
            data = EpochIn.model_validate({"attempt": 1, "metrics": {}, "stats": STATS})
            epochs.put_epoch(session=session, run_id=run_id, epoch=7, data=data)

    assert _in_threads(write) == []
    with database.session(write=False) as session:
        assert session.scalar(select(func.count()).select_from(Epoch)) == 1


@pytest.mark.parametrize("rounds", [3])
def test_claim_when_two_workers_race_exactly_one_wins(database: Database, rounds: int) -> None:
    with database.transaction() as session:
        created, _ = submit.create_jobs(
            session=session, data=JobSubmit(sweep={"lr": [0.1] * rounds}), owner_id=None, max_attempts=3
        )
        run_ids = [run.id for run in created]
    for run_id in run_ids:
        wins: list[int] = []

        def claim(_i: int, run_id: int = run_id, wins: list[int] = wins) -> None:
            with database.transaction() as session:
                result = lifecycle.claim(session=session, run_id=run_id, worker={}, lease_seconds=60)
                if result.run is not None:
                    wins.append(result.run.attempt)

        assert _in_threads(claim, count=4) == []
        assert wins == [1]
