"""Packed SDK scalars (``app.series.chunks``) equal the ``metrics`` rows under replays and overwrites."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from app.db import Database
from app.migrate import downgrade, upgrade
from app.models import Metric, MetricChunk, Project, Run
from app.series import metrics
from app.series.chunks import CHUNK, CHUNK_BITS, as_batch, load_chunks, merge, rebuild_chunks
from app.series.downsample import downsample
from app.series.metrics import store_points
from app.series.query import load_series

Points = dict[tuple[str, int], float | None]

# steps around chunk boundaries, values with ties, -0.0 and NULLs (non-finite numbers stored as NULL)
STEPS = st.one_of(st.integers(0, 3 * CHUNK), st.integers(10**9, 10**9 + 40))
VALUES = st.one_of(st.none(), st.sampled_from([-1.0, 0.0, -0.0, 2.5]), st.floats(-1e9, 1e9))
BATCH = st.dictionaries(st.tuples(st.sampled_from(["loss", "acc"]), STEPS), VALUES, max_size=60)


def _new_run(database: Database) -> int:
    with database.transaction() as session:
        project = session.scalar(select(Project).where(Project.name == "chunks")) or Project(name="chunks")
        run = Run(project=project, kind="sdk", status="running")
        session.add(run)
        session.flush()
        return run.id


def _stored(database: Database, run_id: int, key: str) -> list[tuple[int, float | None]]:
    with database.session(write=False) as session:
        rows = session.execute(
            select(Metric.step, Metric.value)
            .where(Metric.run_id == run_id, Metric.key == key)
            .order_by(Metric.step)
        )
        return [(int(s), v) for s, v in rows]


def _as_list(arrays: Any) -> list[tuple[int, float | None]]:
    steps, values = arrays
    return [(int(s), None if np.isnan(v) else float(v)) for s, v in zip(steps, values, strict=True)]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batches=st.lists(BATCH, min_size=1, max_size=6), max_points=st.integers(2, 50))
def test_store_points_when_batches_replayed_or_overwritten_chunks_equal_rows_and_series_equals_python(
    database: Database, batches: list[Points], max_points: int
) -> None:
    run_id = _new_run(database)
    model: Points = {}
    for i, batch in enumerate(batches):
        with database.transaction() as session:
            store_points(session=session, run_id=run_id, points=batch, attempt=1)
            if i % 2:  # a replay of the same batch changes nothing
                store_points(session=session, run_id=run_id, points=batch, attempt=1)
        model |= batch
    with database.session(write=False) as session:
        packed = load_chunks(session=session, run_ids=[run_id], key="loss")
        series = load_series(
            session=session, run_ids=[run_id], key="loss", max_points=max_points, source="metric"
        )[0]
    expected = sorted((s, v) for (k, s), v in model.items() if k == "loss")
    assert _stored(database, run_id, "loss") == expected
    assert (_as_list(packed[run_id]) if expected else []) == expected
    finite = [(s, v) for s, v in expected if v is not None]
    xs, ys = [s for s, _ in finite], [v for _, v in finite]
    lo_hi = {"lo": expected[0][0], "hi": expected[-1][0]} if expected else {}
    assert series.total == len(finite)
    assert series.points == (downsample(xs, ys, max_points, **lo_hi) if finite else [])


def test_store_points_beyond_one_statement_stores_every_point(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite writes SQLITE_ROWS points per INSERT: a batch of several statements, with a short last
    one, an overwrite across their edges and NULLs, stores exactly the points given."""
    monkeypatch.setattr(metrics, "SQLITE_ROWS", 7)
    run_id = _new_run(database)
    rng = np.random.default_rng(3)
    first: Points = {(k, int(s)): float(rng.normal()) for k in ("loss", "acc") for s in range(0, 61, 3)}
    second: Points = {("loss", s): (None if s % 4 == 0 else float(s)) for s in range(30, 90)}
    for batch in (first, second):
        with database.transaction() as session:
            store_points(session=session, run_id=run_id, points=batch, attempt=1)
    model = first | second
    for key in ("loss", "acc"):
        assert _stored(database, run_id, key) == sorted((s, v) for (k, s), v in model.items() if k == key)


def test_rebuild_chunks_when_recomputed_from_rows_equals_incremental_chunks(database: Database) -> None:
    run_id = _new_run(database)
    rng = np.random.default_rng(7)
    with database.transaction() as session:
        for _ in range(5):
            steps = rng.integers(0, 5000, size=300).tolist()
            store_points(
                session=session,
                run_id=run_id,
                points={("loss", s): float(rng.normal()) for s in steps},
                attempt=1,
            )
    with database.session(write=False) as session:
        before = _as_list(load_chunks(session=session, run_ids=[run_id], key="loss")[run_id])
    with database.transaction() as session:
        assert rebuild_chunks(session=session, run_ids=[run_id]) == len(before)
    with database.session(write=False) as session:
        assert (
            _as_list(load_chunks(session=session, run_ids=[run_id], key="loss")[run_id])
            == before
            == _stored(database, run_id, "loss")
        )


def test_merge_when_steps_clash_keeps_the_newest_value_in_step_order() -> None:
    old = (np.array([1, 5, 9], dtype=np.int64), np.array([1.0, 5.0, 9.0]))
    steps, values = merge(old, np.array([9, 2, 5, 2], dtype=np.int64), np.array([90.0, 20.0, 50.0, 21.0]))
    assert steps.tolist() == [1, 2, 5, 9] and values.tolist() == [1.0, 21.0, 50.0, 90.0]


def test_upgrade_when_metrics_exist_backfills_their_chunks(database: Database) -> None:
    run_id = _new_run(database)  # at head: the ORM's Run has columns of later migrations
    downgrade(database.engine, "0003_accounts")
    sparse = [2**20 + CHUNK * i for i in range(1200)]  # one chunk each: more than one insert batch
    steps = [0, 7, 1023, 1024, 5000, *sparse]
    rows = [
        {"run_id": run_id, "key": "loss", "step": s, "value": None if s == 7 else s / 2, "attempt": 1}
        for s in steps
    ]
    with database.transaction() as session:
        session.execute(Metric.__table__.insert(), rows)
    upgrade(database.engine, "head")
    with database.session(write=False) as session:
        packed = _as_list(load_chunks(session=session, run_ids=[run_id], key="loss")[run_id])
        chunks = session.scalar(select(func.count()).select_from(MetricChunk))
    assert packed[:5] == [(0, 0.0), (7, None), (1023, 511.5), (1024, 512.0), (5000, 2500.0)]
    assert packed[5:] == [(s, s / 2) for s in sparse] and chunks == len({s >> CHUNK_BITS for s in steps})


def test_load_chunks_when_chunks_are_full_implies_their_steps_and_reads_partial_ones(
    database: Database,
) -> None:
    dense = _new_run(database)
    mixed = _new_run(database)
    dense_points: Points = {("loss", s): float(s) / 7 for s in range(3 * CHUNK)}  # three full chunks
    mixed_points: Points = dense_points | {("loss", 3 * CHUNK + 5): -1.0, ("loss", 5 * CHUNK + 1): None}
    with database.transaction() as session:
        store_points(session=session, run_id=dense, points=dense_points, attempt=1)
        store_points(session=session, run_id=mixed, points=mixed_points, attempt=1)
    with database.session(write=False) as session:
        packed = load_chunks(session=session, run_ids=[dense, mixed], key="loss")
    assert _as_list(packed[dense]) == sorted((s, v) for (_, s), v in dense_points.items())
    assert _as_list(packed[mixed]) == sorted((s, v) for (_, s), v in mixed_points.items())
    assert packed[dense][0].dtype == np.int64 and packed[mixed][0].dtype == np.int64


@settings(max_examples=60, deadline=None)
@given(
    points=st.lists(st.tuples(st.sampled_from(["loss", "acc", "lr"]), STEPS, VALUES), min_size=1, max_size=40)
)
def test_as_batch_when_keys_repeat_or_steps_unsorted_equals_last_write_per_key_step(
    points: list[tuple[str, int, float | None]],
) -> None:
    expected: Points = {}
    for key, step, value in points:
        expected[(key, step)] = value
    keys, steps, values = (list(c) for c in zip(*points, strict=True))
    batch = as_batch(keys, steps, values)
    found = {
        (k, int(s)): None if np.isnan(v) else float(v)
        for k, s, v in zip(batch.keys(), batch.steps, batch.values, strict=True)
    }
    assert found == expected and len(batch.steps) == len(expected)
    order = [(batch.key_index[i], batch.steps[i]) for i in range(len(batch.steps))]
    assert order == sorted(order)  # grouped by key, steps increasing
