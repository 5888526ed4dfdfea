"""Free scalar metrics (SDK): batches upserted by (run, key, step), with their packed copy."""

from __future__ import annotations

from collections.abc import Mapping

from sqlalchemy import text
from sqlalchemy.orm import Session

from app.models import utcnow
from app.runs.store import update_run, writable_run
from app.series.chunks import write_chunks
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
    if not points:
        return
    if session.get_bind().dialect.name == "postgresql":  # keys are unique: no row is hit twice
        keys, steps = zip(*points, strict=True)
        arrays = {"keys": list(keys), "steps": list(steps), "vals": list(points.values())}
        session.execute(_PG_UPSERT, {"run_id": run_id, "attempt": attempt} | arrays)
    else:
        rows = [(run_id, key, step, value, attempt) for (key, step), value in points.items()]
        session.connection().exec_driver_sql(_SQLITE_UPSERT, rows)
    write_chunks(
        session=session, run_id=run_id, points=points
    )  # after the upsert: under the write lock it took


def write_metrics(*, session: Session, run_id: int, data: MetricBatchIn) -> int:
    """Upsert the batch (the last point wins for a repeated (key, step)); returns the rows written."""
    run = writable_run(session=session, run_id=run_id, attempt=data.attempt)
    points: dict[tuple[str, int], float | None] = {(p.key, p.step): p.value for p in data.points}
    store_points(session=session, run_id=run_id, points=points, attempt=data.attempt)
    update_run(session=session, run=run, updated_at=utcnow())
    return len(points)
