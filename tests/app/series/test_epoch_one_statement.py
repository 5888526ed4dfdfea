"""The event loop's own epoch write stores what the usual path stores: PostgreSQL's one statement
(``app.series.epoch_pg``) and SQLite's one transaction (``app.series.epoch_sqlite``).

Two runs get the same sequence of epoch writes — out of order, with and without statistics, with
missing and non-improving metrics, replays and a superseding attempt — one as the route does it (the
event loop's write, on ``app.driver_pool`` or ``app.loop_sqlite``, then the usual path when it wrote
nothing), one through the usual path only (``epochs.put_epoch`` in a session). Their epochs,
summaries, last epochs and events must be equal (on SQLite, their stored bytes too); and the event
loop's write must write nothing at all where the usual path answers 404/409 or replays.
"""

from __future__ import annotations

import asyncio
import random
import sqlite3
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from apikit import STATS
from sqlalchemy import func, select, text, update

from app import loop_sqlite
from app.db import PING_AFTER_IDLE_S, Database
from app.driver_pool import AsyncDriverPool, driver_pool_for
from app.errors import Conflict, NotFound
from app.loop_sqlite import LoopSqlite, loop_sqlite_for
from app.models import Epoch, Run, RunEvent
from app.runs import lifecycle, submit
from app.series import epoch_sqlite, epochs
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
    """An event loop that keeps running between calls, with the event loop's own connections on it
    (as a server's): PostgreSQL's driver pool, or SQLite's loop connection."""

    def __init__(self, db: Database) -> None:
        self.runner = asyncio.Runner()
        self.pool: AsyncDriverPool | None = driver_pool_for(
            db.engine, size=2, ping_after_idle_s=PING_AFTER_IDLE_S
        )
        self.sqlite: LoopSqlite | None = loop_sqlite_for(db.engine)
        assert (self.pool is None) != (self.sqlite is None)

    def insert(self, run_id: int, epoch: int, data: EpochIn, now: datetime) -> RunEvent | None:
        if self.sqlite is not None:
            db = self.sqlite  # as the route: the write, then the checkpoint when one is due
            event = epoch_sqlite.insert_new_epoch(db=db, run_id=run_id, epoch=epoch, data=data, now=now)
            self.runner.run(db.checkpoint_if_due())
            return event
        assert self.pool is not None
        return self.runner.run(
            insert_new_epoch(pool=self.pool, run_id=run_id, epoch=epoch, data=data, now=now)
        )

    def close(self) -> None:
        if self.pool is not None:
            self.runner.run(self.pool.aclose())
        if self.sqlite is not None:
            self.sqlite.close()
        self.runner.close()


@pytest.fixture
def loop(database: Database) -> Iterator[Loop]:
    found = Loop(database)
    try:
        yield found
    finally:
        found.close()


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
        return summary, run.last_epoch, stored, list(events), _stored_text(db, run_id)


def _stored_text(db: Database, run_id: int) -> tuple[Any, ...]:
    """SQLite: the rows as stored (JSON text, JSON null or SQL NULL), but for ids and times."""
    if db.engine.dialect.name != "sqlite":
        return ()
    with db.engine.connect() as conn:
        columns = ", ".join(c for c in epoch_sqlite._EPOCH_COLUMNS if c not in ("run_id", "recorded_at"))
        query = f"SELECT {columns} FROM epochs WHERE run_id = ? ORDER BY epoch"
        rows = conn.exec_driver_sql(query, (run_id,))
        run = conn.exec_driver_sql("SELECT summary, last_epoch FROM runs WHERE id = ?", (run_id,))
        events = conn.exec_driver_sql(
            "SELECT type, payload FROM run_events WHERE run_id = ? ORDER BY id", (run_id,)
        )
        return tuple(map(tuple, rows)), tuple(run.one()), tuple(map(tuple, events))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_loop_write_and_usual_path_store_the_same(database: Database, loop: Loop, seed: int) -> None:
    pg = database
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
    summary, last_epoch, stored, events, _ = _state(pg, fast)
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
def test_the_loop_write_writes_nothing_where_the_usual_path_refuses_or_replays(
    database: Database, loop: Loop, case: str
) -> None:
    pg = database
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


@pytest.fixture
def lite(database: Database) -> Database:
    if database.engine.dialect.name != "sqlite":
        pytest.skip("the event loop's own connection is SQLite's")
    return database


def test_sqlite_loop_write_leaves_no_transaction_open_and_is_seen_at_once(lite: Database, loop: Loop) -> None:
    run_id = _running_run(lite)
    data = EpochIn.model_validate({"attempt": 1, "metrics": {}, "stats": STATS})
    event = loop.insert(run_id, 0, data, datetime.now(UTC))
    assert event is not None and event.run_id == run_id and event.payload == {"epoch": 0, "attempt": 1}
    assert loop.sqlite is not None and loop.sqlite._conn is not None and not loop.sqlite._conn.in_transaction
    with lite.transaction() as session:  # another connection writes at once: no lock left behind
        assert epochs.put_epoch(session=session, run_id=run_id, epoch=1, data=data).changed
    assert _count(lite, Epoch.__table__, run_id) == 2


def test_sqlite_loop_write_never_waits_for_a_lock_held_elsewhere(lite: Database, loop: Loop) -> None:
    """Another connection holds the write lock (a metrics batch in a thread): the event loop does not
    sleep on it; the write goes the usual way, which waits its turn."""
    run_id = _running_run(lite)
    data = EpochIn.model_validate({"attempt": 1, "metrics": {}, "stats": STATS})
    holder = sqlite3.connect(str(lite.engine.url.database), isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")
        started = time.monotonic()
        assert loop.insert(run_id, 0, data, datetime.now(UTC)) is None
        assert time.monotonic() - started < 0.2  # the engine's busy timeout is seconds
        holder.execute("ROLLBACK")
    finally:
        holder.close()
    assert _count(lite, Epoch.__table__, run_id) == 0
    assert loop.insert(run_id, 0, data, datetime.now(UTC)) is not None  # the lock is free again
    assert _count(lite, Epoch.__table__, run_id) == 1


def test_sqlite_loop_write_rolls_back_on_a_driver_error_and_goes_on(lite: Database, loop: Loop) -> None:
    from sqlalchemy.exc import DBAPIError, IntegrityError

    run_id = _running_run(lite)
    assert loop.sqlite is not None

    def half_then_fail(conn: Any) -> int:
        conn.execute("UPDATE runs SET name = 'half-written' WHERE id = ?", (run_id,))
        insert = (
            "INSERT INTO epochs (run_id, epoch, attempt, metrics, recorded_at) VALUES (?, 0, 1, '{}', '')"
        )
        conn.execute(insert, (run_id + 1000,))  # no such run: a foreign-key violation
        return 1

    with pytest.raises(IntegrityError) as raised:
        loop.sqlite.write(half_then_fail)
    assert isinstance(raised.value, DBAPIError) and "FOREIGN KEY" in str(raised.value)
    with lite.transaction() as session:
        run = session.get(Run, run_id)
        assert run is not None and run.name != "half-written"
    data = EpochIn.model_validate({"attempt": 1, "metrics": {}, "stats": STATS})
    assert loop.insert(run_id, 0, data, datetime.now(UTC)) is not None


def test_sqlite_loop_connection_is_only_for_a_database_file(lite: Database) -> None:
    from sqlalchemy import create_engine

    memory = ("sqlite://", "sqlite:///:memory:", "sqlite:///file:shared?mode=memory&cache=shared&uri=true",
              "sqlite:///file::memory:?uri=true")  # fmt: skip
    for url in memory:
        engine = create_engine(url)
        try:
            assert loop_sqlite_for(engine) is None, url
        finally:
            engine.dispose()
    found = loop_sqlite_for(lite.engine)
    assert found is not None and driver_pool_for(lite.engine, size=1, ping_after_idle_s=1) is None


def test_sqlite_loop_connection_leaves_checkpoints_to_a_thread_and_the_wal_starts_over(
    lite: Database, loop: Loop, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The loop's commits never checkpoint (an fsync on the event loop); every ``CHECKPOINT_EVERY``
    of them a checkpoint runs in a thread before the write answers, so one epoch after another
    keeps the WAL from growing."""
    monkeypatch.setattr(loop_sqlite, "CHECKPOINT_EVERY", 20)
    run_id = _running_run(lite)
    data = EpochIn.model_validate({"attempt": 1, "metrics": {}, "stats": STATS | {"dim_std": [0.5] * 2000}})
    wal = Path(f"{lite.engine.url.database}-wal")
    sizes = []
    for epoch in range(120):
        assert loop.insert(run_id, epoch, data, datetime.now(UTC)) is not None
        if epoch == 19:
            sizes.append(wal.stat().st_size)
    sizes.append(wal.stat().st_size)
    assert loop.sqlite is not None and loop.sqlite._conn is not None
    assert loop.sqlite._conn.execute("PRAGMA wal_autocheckpoint").fetchone() == (0,)
    assert sizes[1] < 1.5 * sizes[0], sizes  # without the checkpoints: six times as large
    assert _count(lite, Epoch.__table__, run_id) == 120


def test_sqlite_loop_connection_checkpoints_by_the_wal_size_too(
    lite: Database, loop: Loop, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Big epochs fill the WAL long before a hundred commits: its size alone makes a checkpoint due."""
    monkeypatch.setattr(loop_sqlite, "CHECKPOINT_EVERY", 10**9)
    monkeypatch.setattr(loop_sqlite, "WAL_LIMIT_BYTES", 256 * 1024)
    run_id = _running_run(lite)
    wide = [0.123456789] * 3000  # ~36 KB of JSON per list
    data = EpochIn.model_validate({"attempt": 1, "metrics": {}, "stats": STATS | {"dim_std": wide}})
    wal = Path(f"{lite.engine.url.database}-wal")
    peak = 0
    for epoch in range(80):  # ~3 MB of epochs
        assert loop.insert(run_id, epoch, data, datetime.now(UTC)) is not None
        peak = max(peak, wal.stat().st_size)
    assert peak < 1024 * 1024, peak  # without: the whole 3 MB and more
    assert _count(lite, Epoch.__table__, run_id) == 80


def test_sqlite_loop_write_stores_timestamps_in_the_sessions_text_format(lite: Database, loop: Loop) -> None:
    """SQLAlchemy writes SQLite datetimes as 'YYYY-MM-DD HH:MM:SS.ffffff', microseconds always: text
    comparisons (``recorded_at >= :since``) depend on it, also at a whole second."""
    import re

    run_id = _running_run(lite)
    data = EpochIn.model_validate({"attempt": 1, "metrics": {}, "stats": STATS})
    whole_second = datetime(2026, 12, 8, 1, 2, 3, tzinfo=UTC)
    assert loop.insert(run_id, 0, data, whole_second) is not None
    with lite.engine.connect() as conn:
        stored = [
            conn.exec_driver_sql("SELECT recorded_at FROM epochs WHERE run_id = ?", (run_id,)).scalar_one(),
            conn.exec_driver_sql("SELECT updated_at FROM runs WHERE id = ?", (run_id,)).scalar_one(),
            conn.exec_driver_sql(
                "SELECT created_at FROM run_events WHERE run_id = ? AND type = 'epoch'", (run_id,)
            ).scalar_one(),
        ]
    assert stored == ["2026-12-08 01:02:03.000000"] * 3
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6}", text) for text in stored)


def test_sqlite_loop_connection_to_a_database_in_memory_is_never_used(lite: Database) -> None:
    """A URI form of an in-memory database that the URL check misses: the connection finds no file
    behind its database, closes, and every write goes the usual way."""
    from app.loop_sqlite import LoopBusy

    found = LoopSqlite(("file:cw-test-mem?mode=memory&cache=shared",), {"uri": True}, lite.engine.dialect)
    for _ in range(2):
        with pytest.raises(LoopBusy):
            found.write(lambda conn: 1)
    assert found._conn is None and found._disabled


def test_sqlite_wal_cut_back_by_any_connection_keeps_small_loop_writes_free_of_checkpoints(
    lite: Database, loop: Loop, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A big write through a session leaves the WAL file past the limit; the session's connections
    cut it back when they start the WAL over (``journal_size_limit`` on every connection), so the
    loop's small writes that follow are not each held for a checkpoint (they were: 40 of 40)."""
    assert loop.sqlite is not None
    checkpoints: list[int] = []
    real = loop.sqlite.checkpoint

    def counted() -> bool:
        checkpoints.append(1)
        return real()

    monkeypatch.setattr(loop.sqlite, "checkpoint", counted)
    run_id = _running_run(lite)
    small = EpochIn.model_validate({"attempt": 1, "metrics": {}, "stats": STATS})
    assert loop.insert(run_id, 0, small, datetime.now(UTC)) is not None
    with lite.transaction() as session:  # 5 MB through a session: the WAL file passes 4 MB
        session.execute(update(Run).where(Run.id == run_id).values(error="x" * 5_000_000))
    with lite.transaction() as session:
        session.execute(update(Run).where(Run.id == run_id).values(error=None))
    for epoch in range(1, 41):
        with lite.transaction() as session:  # a session write between loop writes (a metrics batch)
            epochs.set_run_columns(session=session, run_id=run_id, updated_at=datetime.now(UTC))
        assert loop.insert(run_id, epoch, small, datetime.now(UTC)) is not None
    assert len(checkpoints) <= 2, len(checkpoints)
    assert Path(f"{lite.engine.url.database}-wal").stat().st_size <= loop_sqlite.WAL_LIMIT_BYTES


def test_sqlite_loop_connection_opened_under_a_lock_held_elsewhere_falls_back(lite: Database) -> None:
    """An exclusive lock held by another program while the loop connection is opened: the write is
    refused as busy (the usual path waits), not a bare driver error; nothing is left open."""
    from sqlalchemy import create_engine

    from app.loop_sqlite import LoopBusy

    path = str(Path(str(lite.engine.url.database)).with_name("other.db"))  # no other connection to it
    setup = sqlite3.connect(path, isolation_level=None)
    setup.executescript(
        "PRAGMA journal_mode=WAL; CREATE TABLE runs (name TEXT); INSERT INTO runs VALUES ('a');"
    )
    setup.close()
    engine = create_engine(f"sqlite:///{path}")
    found = loop_sqlite_for(engine)
    assert found is not None
    holder = sqlite3.connect(path, isolation_level=None)
    try:
        holder.execute("PRAGMA locking_mode=EXCLUSIVE")
        holder.execute("BEGIN IMMEDIATE")
        holder.execute("UPDATE runs SET name = name")
        with pytest.raises(LoopBusy):
            found.write(lambda conn: 1)
        assert found._conn is None and not found._lock.locked()
    finally:
        holder.close()
    assert found.write(lambda conn: conn.execute("SELECT 1").fetchone()[0]) == 1
    found.close()
    engine.dispose()
