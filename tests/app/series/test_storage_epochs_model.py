"""Hypothesis state machine: replays, reorders and stale attempts leave the database equal to a model.

The model: a run has a current attempt; an epoch write from the current attempt is stored unless the
same attempt already wrote that epoch (replay = no-op); any other attempt gets a conflict; a finished
run takes no writes. Metric points are last-write-wins per (key, step).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from apikit import STATS
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule, run_state_machine_as_test
from sqlalchemy import select, update

from app.db import Database
from app.errors import Conflict
from app.models import Epoch, Metric, Run, utcnow
from app.runs import lifecycle, submit
from app.series import epochs, metrics
from collapsewatch.contract import EpochIn, FinishIn, JobSubmit, MetricBatchIn, MetricPoint

EPOCHS = st.integers(min_value=0, max_value=5)
OFFSETS = st.sampled_from([-1, 0, 0, 0, 1])
ACCS = st.sampled_from([0.1, 0.2, 0.3, 0.4])


class EpochMachine(RuleBasedStateMachine):
    def __init__(self, database: Database) -> None:
        super().__init__()
        self.db = database
        self.run_id = 0
        self.attempt = 1
        self.finished = False
        self.epochs: dict[int, tuple[int, float]] = {}
        self.points: dict[tuple[str, int], float] = {}

    @initialize()
    def start(self) -> None:
        with self.db.transaction() as session:
            [run], _ = submit.create_jobs(session=session, data=JobSubmit(), owner_id=None, max_attempts=1000)
            self.run_id = run.id
            assert lifecycle.claim(session=session, run_id=run.id, worker={}, lease_seconds=60).run

    def _expect_write(self, attempt: int) -> bool:
        return not self.finished and attempt == self.attempt

    @rule(epoch=EPOCHS, offset=OFFSETS, acc=ACCS)
    def put_epoch(self, epoch: int, offset: int, acc: float) -> None:
        attempt = max(1, self.attempt + offset)
        data = EpochIn.model_validate({"attempt": attempt, "metrics": {"val_acc": acc}, "stats": STATS})
        try:
            with self.db.transaction() as session:
                result = epochs.put_epoch(session=session, run_id=self.run_id, epoch=epoch, data=data)
        except Conflict:
            assert not self._expect_write(attempt)
            return
        assert self._expect_write(attempt)
        known = self.epochs.get(epoch)
        assert result.changed == (known is None or known[0] != attempt)
        if result.changed:
            self.epochs[epoch] = (attempt, acc)

    @rule(
        key=st.sampled_from(["loss", "lr"]),
        steps=st.lists(st.integers(0, 4), min_size=1, max_size=4),
        value=ACCS,
        offset=OFFSETS,
    )
    def post_metrics(self, key: str, steps: list[int], value: float, offset: int) -> None:
        attempt = max(1, self.attempt + offset)
        batch = MetricBatchIn(
            attempt=attempt, points=[MetricPoint(key=key, step=s, value=value) for s in steps]
        )  # the SDK's shape, checked by the contract, then written as the route writes it
        try:
            with self.db.transaction() as session:
                metrics.write_metrics(
                    session=session, run_id=self.run_id, attempt=batch.attempt,
                    keys=[p.key for p in batch.points], steps=[p.step for p in batch.points],
                    values=[p.value for p in batch.points],
                )  # fmt: skip
        except Conflict:
            assert not self._expect_write(attempt)
            return
        assert self._expect_write(attempt)
        self.points |= {(key, s): value for s in steps}

    @rule()
    def worker_dies_and_run_is_reclaimed(self) -> None:
        with self.db.transaction() as session:
            session.execute(
                update(Run).where(Run.id == self.run_id).values(lease_until=utcnow() - timedelta(seconds=1))
            )
            claimed = lifecycle.claim(session=session, run_id=self.run_id, worker={}, lease_seconds=60).run
        assert (claimed is not None) == (not self.finished)
        if claimed is not None:
            self.attempt += 1
            assert claimed.attempt == self.attempt

    @rule()
    def finish(self) -> None:
        if self.finished:
            return
        with self.db.transaction() as session:
            lifecycle.finish(
                session=session, run_id=self.run_id, data=FinishIn(attempt=self.attempt, status="succeeded")
            )
        self.finished = True

    @invariant()
    def database_equals_model(self) -> None:
        if not self.run_id:
            return
        with self.db.session(write=False) as session:
            stored = {
                row.epoch: (row.attempt, row.metrics["val_acc"])
                for row in session.scalars(select(Epoch).where(Epoch.run_id == self.run_id))
            }
            points = {
                (row.key, row.step): row.value
                for row in session.scalars(select(Metric).where(Metric.run_id == self.run_id))
            }
            run = session.get(Run, self.run_id)
            assert run is not None
            summary: dict[str, Any] = run.summary
            last_epoch = run.last_epoch
        assert stored == self.epochs
        assert points == self.points
        assert last_epoch == (max(self.epochs) if self.epochs else None)
        best = max((acc for _, acc in self.epochs.values()), default=None)
        assert summary.get("best_val_acc") == best


def test_epoch_writes_when_replayed_reordered_or_stale_match_model(database: Database) -> None:
    postgres = database.engine.dialect.name == "postgresql"
    run_state_machine_as_test(
        lambda: EpochMachine(database),
        settings=settings(
            max_examples=10 if postgres else 20,
            stateful_step_count=20,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
