"""Free scalar metrics (SDK): batches upserted by (run, key, step), with their packed copy."""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence
from functools import lru_cache
from itertools import chain, repeat

import numpy as np
from sqlalchemy import text
from sqlalchemy.orm import Session

from app.models import utcnow
from app.runs.fencing import set_run_columns, writable_state
from app.series.chunks import Batch, as_batch, driver_connection, write_batch, write_batch_sqlite

# PostgreSQL: one statement over three arrays (psycopg's executemany sends 1000 statements)
_PG_UPSERT = text(
    "INSERT INTO metrics (run_id, key, step, value, attempt) "
    "SELECT :run_id, k, s, v, :attempt "
    "FROM unnest(CAST(:keys AS varchar[]), CAST(:steps AS bigint[]), CAST(:vals AS float8[])) AS t(k, s, v) "
    "ON CONFLICT (run_id, key, step) DO UPDATE SET value = excluded.value, attempt = excluded.attempt"
)
# SQLite: multi-row INSERTs on the driver's connection, SQLITE_ROWS points each: 40 % less time than
# sqlite3's executemany of one-row INSERTs (one statement stepped 1,000 times), which was itself far
# cheaper than SQLAlchemy's executemany (a parameter dict built and processed per row)
SQLITE_ROWS = 1000  # x 5 parameters, under SQLite's 32,766


@lru_cache(maxsize=8)
def _sqlite_upsert(rows: int) -> str:
    values = ", ".join(["(?, ?, ?, ?, ?)"] * rows)
    return (
        f"INSERT INTO metrics (run_id, key, step, value, attempt) VALUES {values} "
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
    if not len(batch.steps):
        return
    if session.get_bind().dialect.name != "postgresql":
        with driver_connection(session) as conn:
            store_batch_sqlite(conn, run_id=run_id, batch=batch, attempt=attempt)
        return
    arrays = {"keys": batch.keys(), "steps": batch.steps.tolist(), "vals": _values(batch)}
    session.execute(_PG_UPSERT, {"run_id": run_id, "attempt": attempt} | arrays)  # (key, step) are unique
    write_batch(session=session, run_id=run_id, batch=batch)


def store_batch_sqlite(conn: sqlite3.Connection, *, run_id: int, batch: Batch, attempt: int) -> None:
    """:func:`store_batch` on SQLite's driver connection, inside the caller's write transaction (the
    request's session, or the event loop's own connection: ``app.series.metrics_sqlite``)."""
    n = len(batch.steps)
    if not n:
        return
    columns = (repeat(run_id, n), batch.keys(), batch.steps.tolist(), _values(batch), repeat(attempt, n))
    flat = tuple(chain.from_iterable(zip(*columns, strict=True)))
    for start in range(0, n, SQLITE_ROWS):
        part = flat[5 * start : 5 * (start + SQLITE_ROWS)]
        conn.execute(_sqlite_upsert(len(part) // 5), part)
    write_batch_sqlite(conn, run_id=run_id, batch=batch)  # after the upsert: under the write lock it took


def _values(batch: Batch) -> list[float | None]:
    """The batch's values for the driver: NaN (which stands for NULL) as None."""
    values: list[float | None] = batch.values.tolist()
    if np.isnan(batch.values).any():
        values = [None if v != v else v for v in values]
    return values


def write_metrics(
    *,
    session: Session,
    run_id: int,
    attempt: int,
    keys: Sequence[str],
    steps: Sequence[int],
    values: Sequence[float | None],
) -> int:
    """Upsert the points ``zip(keys, steps, values)`` from ``attempt`` (the last point wins for a
    repeated (key, step)); returns the rows written."""
    writable_state(session=session, run_id=run_id, attempt=attempt)
    batch = as_batch(keys, steps, values)
    store_batch(session=session, run_id=run_id, batch=batch, attempt=attempt)
    set_run_columns(session=session, run_id=run_id, updated_at=utcnow())
    return len(batch.steps)
