"""Free scalar metrics (SDK): batches upserted by (run, key, step), with their packed copy."""

from __future__ import annotations

from collections.abc import Mapping
from itertools import repeat

import numpy as np
from sqlalchemy import text
from sqlalchemy.orm import Session

from app.models import utcnow
from app.runs.fencing import set_run_columns, writable_state
from app.series.chunks import Batch, as_batch, write_batch
from collapsewatch.contract import MetricBatchIn

# PostgreSQL: one statement over three arrays (psycopg's executemany sends 1000 statements)
_PG_UPSERT = text(
    "INSERT INTO metrics (run_id, key, step, value, attempt) "
    "SELECT :run_id, k, s, v, :attempt "
    "FROM unnest(CAST(:keys AS varchar[]), CAST(:steps AS bigint[]), CAST(:vals AS float8[])) AS t(k, s, v) "
    "ON CONFLICT (run_id, key, step) DO UPDATE SET value = excluded.value, attempt = excluded.attempt"
)
# SQLite: the driver's own executemany over plain tuples (SQLAlchemy's executemany builds and
# processes a parameter dict per row: two thirds of a 1,000-point batch's server time)
_SQLITE_UPSERT = (
    "INSERT INTO metrics (run_id, key, step, value, attempt) VALUES (?, ?, ?, ?, ?) "
    "ON CONFLICT (run_id, key, step) DO UPDATE SET value = excluded.value, attempt = excluded.attempt"
)


def store_points(
    *, session: Session, run_id: int, points: Mapping[tuple[str, int], float | None], attempt: int
) -> None:
    """Upsert ``{(key, step): value}`` into ``metrics`` and merge it into ``metric_chunks``."""
    if points:
        keys, steps = zip(*points, strict=True)
        batch = as_batch(keys, steps, list(points.values()))
        store_batch(session=session, run_id=run_id, batch=batch, attempt=attempt)


def store_batch(*, session: Session, run_id: int, batch: Batch, attempt: int) -> None:
    """Upsert ``batch`` into ``metrics`` and merge it into ``metric_chunks``."""
    n = len(batch.steps)
    if not n:
        return
    values: list[float | None] = batch.values.tolist()
    if np.isnan(batch.values).any():  # NaN stands for NULL
        values = [None if v != v else v for v in values]
    if session.get_bind().dialect.name == "postgresql":  # (key, step) are unique: no row is hit twice
        arrays = {"keys": batch.keys(), "steps": batch.steps.tolist(), "vals": values}
        session.execute(_PG_UPSERT, {"run_id": run_id, "attempt": attempt} | arrays)
    else:
        columns = (repeat(run_id, n), batch.keys(), batch.steps.tolist(), values, repeat(attempt, n))
        rows = list(zip(*columns, strict=True))
        session.connection().exec_driver_sql(_SQLITE_UPSERT, rows)
    write_batch(session=session, run_id=run_id, batch=batch)  # after the upsert: under the write lock it took


def write_metrics(*, session: Session, run_id: int, data: MetricBatchIn) -> int:
    """Upsert the batch (the last point wins for a repeated (key, step)); returns the rows written."""
    writable_state(session=session, run_id=run_id, attempt=data.attempt)
    points = data.points
    keys, steps, values = [p.key for p in points], [p.step for p in points], [p.value for p in points]
    batch = as_batch(keys, steps, values)
    store_batch(session=session, run_id=run_id, batch=batch, attempt=data.attempt)
    set_run_columns(session=session, run_id=run_id, updated_at=utcnow())
    return len(batch.steps)
