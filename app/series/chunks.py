"""Packed copies of the SDK scalars (``metric_chunks``), kept exact at write time, read by series queries.

A chunk holds one (run, key)'s points in steps ``[c * CHUNK, (c + 1) * CHUNK)`` as two arrays (steps,
values; NaN stands for a NULL value), so it never exceeds ``CHUNK`` points. Every metrics upsert
merges its points into the chunks it touches in the same transaction, after the ``metrics`` rows are
written (which takes SQLite's write lock; PostgreSQL writers hold the run's row lock), so a chunk is
always exactly the ``metrics`` rows of its range: a replayed or overwritten (key, step) replaces the
value (the last write wins, as in the table). A series query then reads ~40 blobs per run instead of
grouping 10,000 rows, and buckets them with numpy (``app.series.arrays``).
"""

from __future__ import annotations

import sqlite3
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, NamedTuple, cast

import numpy as np
from numpy.typing import NDArray
from sqlalchemy import bindparam, select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from app.models import Metric, MetricChunk
from app.runs.upsert import upsert

# 256 steps: a small batch rewrites at most 4 KiB per (key, chunk) it touches. Stored rows depend on
# it: changing it needs a migration that repacks them (0004 backfilled with 8).
CHUNK_BITS = 8
CHUNK = 1 << CHUNK_BITS
STEP = np.dtype("<i8")
VALUE = np.dtype("<f8")
Arrays = tuple[NDArray[np.int64], NDArray[np.float64]]
_TABLE: Any = MetricChunk.__table__
_COLUMNS = _TABLE.c
_SQLITE_UPSERT = (  # the driver's executemany over tuples, as app.series.metrics does
    "INSERT INTO metric_chunks (run_id, key, chunk, n, steps, vals) VALUES (?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (run_id, key, chunk) DO UPDATE SET n = excluded.n, steps = excluded.steps, "
    "vals = excluded.vals"
)


def pack(steps: NDArray[np.int64], values: NDArray[np.float64]) -> tuple[bytes, bytes]:
    return steps.astype(STEP).tobytes(), values.astype(VALUE).tobytes()


def unpack(steps: bytes, values: bytes) -> Arrays:
    return np.frombuffer(steps, dtype=STEP), np.frombuffer(values, dtype=VALUE)


def merge(old: Arrays | None, steps: NDArray[np.int64], values: NDArray[np.float64]) -> Arrays:
    """``old`` with ``(steps, values)`` written over it: sorted by step, the new value wins a clash."""
    if old is not None:
        steps, values = np.concatenate([old[0], steps]), np.concatenate([old[1], values])
    order = np.argsort(steps, kind="stable")  # stable: of equal steps, the later (newer) comes last
    steps, values = steps[order], values[order]
    last = np.append(steps[1:] != steps[:-1], True)
    return steps[last], values[last]


class Batch(NamedTuple):
    """Points as columns, sorted by (key, step) with each (key, step) once (the last value given)."""

    names: list[str]  # the distinct keys
    key_index: NDArray[np.int64]  # per point: its key's index in ``names``
    steps: NDArray[np.int64]
    values: NDArray[np.float64]  # NaN stands for NULL

    def keys(self) -> list[str]:
        """Per point: its key."""
        if len(self.names) == 1:
            return self.names * len(self.steps)
        return np.array(self.names, dtype=object)[self.key_index].tolist()


def as_batch(keys: Sequence[str], steps: Sequence[int], values: Sequence[float | None]) -> Batch:
    """The points ``zip(keys, steps, values)`` (``None`` for NULL) as a :class:`Batch`; of a repeated
    (key, step) the last value wins. One key with increasing steps (the usual batch) is not sorted."""
    n = len(steps)
    step = np.array(steps, dtype=STEP)
    value = np.array(values, dtype=VALUE)  # None becomes NaN
    if n and keys.count(keys[0]) == n:
        key_index = np.zeros(n, dtype=np.int64)
        if n == 1 or bool(np.all(step[1:] > step[:-1])):
            return Batch([keys[0]], key_index, step, value)
        names = [keys[0]]
    else:
        index: dict[str, int] = {}
        key_index = np.fromiter((index.setdefault(k, len(index)) for k in keys), dtype=np.int64, count=n)
        names = list(index)
    order = np.lexsort((step, key_index))  # stable: a repeated (key, step) keeps its input order
    key_index, step, value = key_index[order], step[order], value[order]
    last = np.ones(n, dtype=bool)
    last[:-1] = (key_index[1:] != key_index[:-1]) | (step[1:] != step[:-1])
    return Batch(names, key_index[last], step[last], value[last])


def write_chunks(*, session: Session, run_id: int, points: Mapping[tuple[str, int], float | None]) -> None:
    """Merge ``{(key, step): value}`` (already upserted into ``metrics``) into the run's chunks."""
    if points:
        keys, steps = zip(*points, strict=True)
        write_batch(session=session, run_id=run_id, batch=as_batch(keys, steps, list(points.values())))


def write_batch(*, session: Session, run_id: int, batch: Batch) -> None:
    """Merge ``batch`` (already upserted into ``metrics``) into the run's chunks."""
    if not len(batch.steps):
        return
    if session.get_bind().dialect.name == "sqlite":  # the driver's own SQL, as app.series.metrics
        with driver_connection(session) as conn:
            write_batch_sqlite(conn, run_id=run_id, batch=batch)
        return
    lo, hi = chunk_span(batch)
    found = session.execute(_EXISTING, {"run_id": run_id, "keys": batch.names, "lo": lo, "hi": hi})
    names = ("run_id", "key", "chunk", "n", "steps", "vals")
    upsert(
        session=session,
        table=_TABLE,
        rows=[dict(zip(names, row, strict=True)) for row in merged_rows(run_id, batch, _unpacked(found))],
        conflict=["run_id", "key", "chunk"],
        update=["n", "steps", "vals"],
    )


def write_batch_sqlite(conn: sqlite3.Connection, *, run_id: int, batch: Batch) -> None:
    """:func:`write_batch` on SQLite's driver connection, inside the caller's write transaction:
    building Core statements cost as much as running them."""
    if not len(batch.steps):
        return
    lo, hi = chunk_span(batch)
    sql = _SQLITE_EXISTING.format(marks=", ".join("?" * len(batch.names)))
    old = _unpacked(conn.execute(sql, (run_id, lo, hi, *batch.names)))
    conn.executemany(_SQLITE_UPSERT, merged_rows(run_id, batch, old))


@contextmanager
def driver_connection(session: Session) -> Iterator[sqlite3.Connection]:
    """The sqlite3 connection under the session's, in its transaction (``app.db`` emits the BEGIN);
    a driver error in the block comes out as SQLAlchemy's ``DBAPIError``, as the session's would."""
    connection = session.connection()
    try:
        yield cast(sqlite3.Connection, connection.connection.driver_connection)
    except sqlite3.Error as exc:
        raise DBAPIError.instance(None, None, exc, sqlite3.Error, dialect=connection.dialect) from exc


def chunk_span(batch: Batch) -> tuple[int, int]:
    """The first and last chunk numbers the (non-empty) batch touches."""
    return int(batch.steps.min()) >> CHUNK_BITS, int(batch.steps.max()) >> CHUNK_BITS


def merged_rows(
    run_id: int, batch: Batch, old: Mapping[tuple[str, int], Arrays]
) -> list[tuple[int, str, int, int, bytes, bytes]]:
    """The ``metric_chunks`` rows (run_id, key, chunk, n, steps, vals) of the chunks ``batch``
    touches: the stored ones in ``old`` ((key, chunk) -> arrays) with the batch's points written over."""
    n = len(batch.steps)
    chunk = batch.steps >> CHUNK_BITS
    starts = np.flatnonzero((batch.key_index[1:] != batch.key_index[:-1]) | (chunk[1:] != chunk[:-1])) + 1
    edges = [0, *starts.tolist(), n]
    first = [int(i) for i in batch.key_index[edges[:-1]]]
    rows = []
    for k, a, b in zip(first, edges[:-1], edges[1:], strict=True):
        key, c = batch.names[k], int(chunk[a])
        s, v = _merge_new(old.get((key, c)), batch.steps[a:b], batch.values[a:b])
        rows.append((run_id, key, c, len(s), *pack(s, v)))
    return rows


def _merge_new(old: Arrays | None, steps: NDArray[np.int64], values: NDArray[np.float64]) -> Arrays:
    """:func:`merge` of increasing ``steps``: appended as they are when they all come after ``old``."""
    if old is None or not len(old[0]):
        return steps, values
    if old[0][-1] < steps[0]:
        return np.concatenate([old[0], steps]), np.concatenate([old[1], values])
    return merge(old, steps, values)


def _unpacked(found: Iterable[Any]) -> dict[tuple[str, int], Arrays]:
    """Stored chunks (key, chunk, steps, vals) by (key, chunk)."""
    return {(k, int(c)): unpack(s, v) for k, c, s, v in found}


_SQLITE_EXISTING = (  # a superset of the chunks the batch touches: its keys, between its first and last
    "SELECT key, chunk, steps, vals FROM metric_chunks WHERE run_id = ? AND chunk BETWEEN ? AND ? "
    "AND key IN ({marks})"
)
_EXISTING = select(_COLUMNS.key, _COLUMNS.chunk, _COLUMNS.steps, _COLUMNS.vals).where(
    _COLUMNS.run_id == bindparam("run_id"),
    _COLUMNS.key.in_(bindparam("keys", expanding=True)),
    _COLUMNS.chunk.between(bindparam("lo"), bindparam("hi")),
)


# A full chunk (n = CHUNK) holds every step of its range: its steps are implied, so they are not read
# (half the bytes of a series query over densely logged scalars).
_BINARY_SQL = (
    f"SELECT run_id, chunk, n, CASE WHEN n = {CHUNK} THEN NULL ELSE steps END, vals FROM metric_chunks "
    "WHERE run_id = ANY(%s) AND key = %s ORDER BY run_id, chunk"
)
_FULL_STEPS = np.arange(CHUNK, dtype=STEP)


def load_chunks(*, session: Session, run_ids: Sequence[int], key: str) -> dict[int, Arrays]:
    """Per run holding ``key``: all its points (steps ascending, NaN for NULL values)."""
    rows: Sequence[Any] | None = _fetch_binary(session, list(run_ids), key)
    if rows is None:
        rows = session.execute(
            select(_COLUMNS.run_id, _COLUMNS.chunk, _COLUMNS.n, _COLUMNS.steps, _COLUMNS.vals)
            .where(_COLUMNS.run_id.in_(run_ids), _COLUMNS.key == key)
            .order_by(_COLUMNS.run_id, _COLUMNS.chunk)
        ).all()
    parts: dict[int, tuple[list[int], list[bytes | None], list[bytes]]] = defaultdict(lambda: ([], [], []))
    for run_id, chunk, n, steps, values in rows:
        chunks, run_steps, run_values = parts[int(run_id)]
        chunks.append(int(chunk))
        run_steps.append(None if n == CHUNK else steps)  # a full chunk's steps are implied
        run_values.append(values)
    return {r: _assemble(*part) for r, part in parts.items()}


def _assemble(chunks: list[int], steps: list[bytes | None], values: list[bytes]) -> Arrays:
    """One run's points from its chunks in order; a full chunk's steps are ``chunk * CHUNK + 0…CHUNK-1``."""
    vals = np.frombuffer(b"".join(values), dtype=VALUE)
    pieces: list[NDArray[np.int64]] = []
    i, count = 0, len(chunks)
    while i < count:
        if steps[i] is None:  # a stretch of full chunks: their steps in one block
            j = i
            while j < count and steps[j] is None:
                j += 1
            block = np.array(chunks[i:j], dtype=STEP)[:, None] << CHUNK_BITS
            pieces.append((block + _FULL_STEPS).ravel())
            i = j
        else:
            pieces.append(np.frombuffer(steps[i], dtype=STEP))  # type: ignore[arg-type]
            i += 1
    return np.concatenate(pieces), vals


def _fetch_binary(session: Session, run_ids: list[int], key: str) -> list[Any] | None:
    """The chunk rows over psycopg's binary protocol, in the session's transaction: bytea travels as
    bytes, not as hex text twice its size (10 runs x 100,000 points are 16 MB of blobs), and is not
    parsed back from hex. None on another driver (SQLite): the caller runs the ORM query."""
    if session.get_bind().dialect.driver != "psycopg":
        return None
    driver: Any = session.connection().connection.driver_connection
    with driver.cursor(binary=True) as cursor:
        cursor.execute(_BINARY_SQL, (run_ids, key))
        return list(cursor.fetchall())


def rebuild_chunks(*, session: Session, run_ids: Iterable[int] | None = None) -> int:
    """Recompute the chunks of ``run_ids`` (all runs when None) from the ``metrics`` rows; returns rows."""
    stmt = select(Metric.run_id, Metric.key, Metric.step, Metric.value).order_by(Metric.run_id, Metric.key)
    delete = _TABLE.delete()
    if run_ids is not None:
        ids = list(run_ids)
        stmt, delete = stmt.where(Metric.run_id.in_(ids)), delete.where(_COLUMNS.run_id.in_(ids))
    session.execute(delete)
    per_run: dict[int, dict[tuple[str, int], float | None]] = defaultdict(dict)
    for run_id, key, step, value in session.execute(stmt):
        per_run[int(run_id)][(key, int(step))] = value
    for run_id, points in per_run.items():
        write_chunks(session=session, run_id=run_id, points=points)
    return sum(len(p) for p in per_run.values())
