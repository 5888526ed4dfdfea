"""Free scalar metrics (SDK): batches upserted by (run, key, step)."""

from __future__ import annotations

from sqlalchemy.orm import Session

from app.models import Metric, utcnow
from app.schemas import MetricBatchIn
from app.services.runs import writable_run
from app.services.upsert import upsert


def write_metrics(*, session: Session, run_id: int, data: MetricBatchIn) -> int:
    """Upsert the batch (the last point wins for a repeated (key, step)); returns the rows written."""
    run = writable_run(session=session, run_id=run_id, attempt=data.attempt)
    points = {(p.key, p.step): p.value for p in data.points}
    rows = [
        {"run_id": run_id, "key": key, "step": step, "value": value, "attempt": data.attempt}
        for (key, step), value in points.items()
    ]
    upsert(session, Metric, rows, conflict=["run_id", "key", "step"], update=["value", "attempt"])
    run.updated_at = utcnow()
    return len(rows)
