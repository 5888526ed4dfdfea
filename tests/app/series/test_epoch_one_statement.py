"""PostgreSQL's one-statement epoch write (``app.series.epoch_pg``) stores what the usual path stores.

Two runs get the same sequence of epoch writes — out of order, with and without statistics, with
missing and non-improving metrics, replays and a superseding attempt — one as the route does it (the
one statement on the event loop's pool, ``app.driver_pool``, then the usual path when it wrote
nothing), one through the usual path only (``epochs.put_epoch`` in a session). Their epochs,
summaries, last epochs and events must be equal; and the one-statement path must write nothing at all
where the usual path answers 404/409 or replays.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from apikit import STATS
from sqlalchemy import func, select, text, update

from app.db import PING_AFTER_IDLE_S, Database
from app.driver_pool import AsyncDriverPool, driver_pool_for
from app.errors import Conflict, NotFound
from app.models import Epoch, Run, RunEvent
from app.runs import lifecycle, submit
from app.series import epochs
from app.series.epoch_pg import insert_new_epoch
from collapsewatch.contract import EpochIn, JobSubmit

COMPARED = ("epoch", "attempt", "metrics", "mean_sv", "sv_position", "effective_rank", "dead_dims",
            "singular_values", "dim_std", "std_hist", "layers")  # fmt: skip


@pytest.fixture
def pg(database: Database) -> Database:
    if database.engine.dialect.name != "postgresql":
        pytest.skip("the one-statement path is PostgreSQL's")
    return database


class Loop:
    """An event loop that keeps running between calls, with the driver pool on it (as a server's)."""

    def __init__(self, db: Database) -> None:
        self.runner = asyncio.Runner()
        pool = driver_pool_for(db.engine, size=2, ping_after_idle_s=PING_AFTER_IDLE_S)
        assert pool is not None
        self.pool: AsyncDriverPool = pool

    def insert(self, run_id: int, epoch: int, data: EpochIn, now: datetime) -> RunEvent | None:
        return self.runner.run(
            insert_new_epoch(pool=self.pool, run_id=run_id, epoch=epoch, data=data, now=now)
        )


@pytest.fixture
def loop(pg: Database) -> Iterator[Loop]:
    found = Loop(pg)
    try:
        yield found
    finally:
        found.runner.run(found.pool.aclose())
        found.runner.close()


def _running_run(db: Database) -> int:
    with db.transaction() as session:
        [run], _ = submit.create_jobs(session=session, data=JobSubmit(), owner_id=None, max_attempts=10)
        assert lifecycle.claim(session=session, run_id=run.id, worker={}, lease_seconds=60).run
        return run.id


def _next_attempt(db: Database, run_id: int) -> None:
    with db.transaction() as session:
        session.execute(update(Run).where(Run.id == run_id).values(status="queued"))
        assert lifecycle.claim(session=session, run_id=run_id, worker={}, lease_seconds=60).run


def _body(rng: random.Random, attempt: int, epoch: int) -> EpochIn:
    metrics: dict[str, Any] = {"train_loss": rng.random()}
    if rng.random() < 0.7:
        metrics["val_acc"] = rng.choice([None, 0.2, 0.5, 0.5, 0.9, 1e22, 12345678901234567.0])
    if rng.random() < 0.5:
        metrics["recall_at_1"] = rng.random()
    body: dict[str, Any] = {"attempt": attempt, "metrics": metrics}
    if rng.random() < 0.75:
        mean_sv = rng.choice([rng.random(), 1e16, 1e-300, 3.0])
        position = rng.choice([rng.random(), -0.0, 0.0])
        body["stats"] = STATS | {"mean_sv": mean_sv, "sv_position": position, "dead_dims": epoch}
    if rng.random() < 0.2:
        body["layers"] = {"fc1": STATS}
    return EpochIn.model_validate(body)


def _write(db: Database, run_id: int, epoch: int, data: EpochIn, *, fast: Loop | None) -> str:
    """As ``PUT /epochs`` does it: with ``fast``, the one statement first (on PostgreSQL, when the
    caller's access is known); when that wrote nothing, or without ``fast``, the usual path."""
    record = epochs.epoch_record(epoch, data)
    if fast is not None and fast.insert(run_id, epoch, data, record.recorded_at) is not None:
        return "written"
    try:
        with db.transaction() as session:
            result = epochs.put_epoch(session=session, run_id=run_id, epoch=epoch, data=data, record=record)
    except Conflict:
        return "409"
    return "written" if result.changed else "replay"


def _state(db: Database, run_id: int) -> tuple[Any, ...]:
    with db.transaction() as session:
        run = session.get(Run, run_id)
        assert run is not None
        rows = session.scalars(select(Epoch).where(Epoch.run_id == run_id).order_by(Epoch.epoch)).all()
        stored = [tuple(getattr(row, name) for name in COMPARED) for row in rows]
        events = session.scalars(
            select(RunEvent.payload)
            .where(RunEvent.run_id == run_id, RunEvent.type == "epoch")
            .order_by(RunEvent.id)
        ).all()
        # the summary as its items with their reprs: order, int/float and -0.0 all count
        summary = [(key, repr(value)) for key, value in run.summary.items()]
        return summary, run.last_epoch, stored, list(events)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_one_statement_and_usual_path_store_the_same(pg: Database, loop: Loop, seed: int) -> None:
    fast, usual = _running_run(pg), _running_run(pg)
    rng = random.Random(seed)
    steps = [(rng.randrange(8), 1) for _ in range(20)]
    steps += [(rng.randrange(8), 2) for _ in range(6)]  # attempt 2 supersedes some epochs
    for i, (epoch, attempt) in enumerate(steps):
        if i == 20:  # the lease moves on: attempt 2 claims both runs
            _next_attempt(pg, fast)
            _next_attempt(pg, usual)
        data = _body(rng, attempt, epoch)
        assert _write(pg, fast, epoch, data, fast=loop) == _write(pg, usual, epoch, data, fast=None)
        assert _state(pg, fast) == _state(pg, usual), f"after step {i}"  # a supersede recomputes all
    assert _state(pg, fast) == _state(pg, usual)
    summary, last_epoch, stored, events = _state(pg, fast)
    assert last_epoch == max(e for e, _ in steps) and len(stored) == len({e for e, _ in steps})
    assert len(events) >= len(stored) and {"stats_epoch", "best_val_acc"} <= dict(summary).keys()


def _count(db: Database, table: Any, run_id: int) -> int:
    with db.transaction() as session:
        return int(
            session.scalar(select(func.count()).select_from(table).where(table.c.run_id == run_id)) or 0
        )


@pytest.mark.parametrize(
    "case", ["stale attempt", "unclaimed attempt", "finished", "queued", "missing", "exists"]
)
def test_one_statement_writes_nothing_where_the_usual_path_refuses_or_replays(
    pg: Database, loop: Loop, case: str
) -> None:
    run_id = _running_run(pg)
    if case == "stale attempt":
        _next_attempt(pg, run_id)  # the run is on attempt 2; the write comes from 1
    attempt = 2 if case == "unclaimed attempt" else 1
    data = EpochIn.model_validate({"attempt": attempt, "metrics": {"val_acc": 0.5}, "stats": STATS})
    if case in ("finished", "queued"):
        with pg.transaction() as session:
            status = "succeeded" if case == "finished" else "queued"
            session.execute(update(Run).where(Run.id == run_id).values(status=status))
    if case == "exists":
        assert _write(pg, run_id, 3, data, fast=None) == "written"
    before = _state(pg, run_id)
    target = run_id + 1000 if case == "missing" else run_id
    now = datetime.now(UTC)
    assert loop.insert(target, 3, data, now) is None
    assert _state(pg, run_id) == before
    assert _count(pg, Epoch.__table__, run_id) == (1 if case == "exists" else 0)
    if case == "missing":
        with pytest.raises(NotFound):
            _write(pg, target, 3, data, fast=loop)
    elif case == "exists":
        assert _write(pg, run_id, 3, data, fast=loop) == "replay"
    else:
        assert _write(pg, run_id, 3, data, fast=loop) == "409"


def test_the_statement_runs_in_autocommit_and_leaves_no_transaction_open(pg: Database, loop: Loop) -> None:
    run_id = _running_run(pg)
    data = EpochIn.model_validate({"attempt": 1, "metrics": {}, "stats": STATS})
    event = loop.insert(run_id, 0, data, datetime.now(UTC))
    assert event is not None and event.run_id == run_id and event.payload == {"epoch": 0, "attempt": 1}
    with pg.engine.connect() as conn:  # seen committed from another connection at once
        stored = conn.execute(text("SELECT count(*) FROM epochs WHERE run_id = :r"), {"r": run_id}).scalar()
        idle = conn.execute(
            text("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                 "AND state LIKE 'idle in transaction%'")
        ).scalar()  # fmt: skip
    assert stored == 1 and idle == 0


def test_a_busy_pool_leaves_a_new_epoch_to_the_usual_path_at_once(pg: Database) -> None:
    """All of the event loop's connections in use (e.g. waiting on a locked run): the write is not
    queued behind them; it goes the usual way (here: written by ``epochs.put_epoch``)."""
    run_id = _running_run(pg)
    data = EpochIn.model_validate({"attempt": 1, "metrics": {}, "stats": STATS})
    pool = driver_pool_for(pg.engine, size=1, ping_after_idle_s=PING_AFTER_IDLE_S)
    assert pool is not None

    async def main() -> tuple[RunEvent | None, float]:
        holder = asyncio.create_task(pool.first_row("SELECT pg_sleep(0.5)", {}))
        await asyncio.sleep(0.1)  # the only connection is busy
        started = time.monotonic()
        event = await insert_new_epoch(pool=pool, run_id=run_id, epoch=0, data=data, now=datetime.now(UTC))
        waited = time.monotonic() - started
        await holder
        await pool.aclose()
        return event, waited

    event, waited = asyncio.run(main())
    assert event is None and waited < 0.3
    assert _count(pg, Epoch.__table__, run_id) == 0
    assert _write(pg, run_id, 0, data, fast=None) == "written"
