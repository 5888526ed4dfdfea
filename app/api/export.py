"""Export a run's epochs: ``epochs.csv`` (scalars) and ``epochs.json`` (everything)."""

from __future__ import annotations

import io
import json

from fastapi import APIRouter
from fastapi.responses import Response
from sqlalchemy.orm import Session

from app.api.access import CanReadRun
from app.deps import HEAVY_READ, RunId, SessionDep
from app.runs import store
from app.series import epochs
from app.web import csv_safe
from collapsewatch.contract import EpochPublic

router = APIRouter(prefix="/api/v1", tags=["export"])


def epochs_csv(records: list[EpochPublic]) -> str:
    """One row per epoch: epoch, attempt, recorded_at, the scalar statistics, then every metric key."""
    metric_keys = sorted({key for record in records for key in record.metrics})
    out = io.StringIO()
    writer = csv_safe.writer(out)  # formula-like text defused, numbers kept (app/web/csv_safe.py)
    writer.writerow(["epoch", "attempt", "recorded_at", *epochs.SCALAR_STATS, *metric_keys])
    for r in records:
        stats = [getattr(r.stats, name) if r.stats else None for name in epochs.SCALAR_STATS]
        values = [r.metrics.get(key) for key in metric_keys]
        writer.writerow([r.epoch, r.attempt, r.recorded_at.isoformat(), *stats, *values])
    return out.getvalue()


def download(run_id: int, fmt: str, *, session: Session) -> Response:
    """The epochs of ``run_id`` as a file download (``fmt``: csv or json)."""
    run = store.get_run(session=session, run_id=run_id)
    records = epochs.list_epochs(session=session, run_id=run_id)
    filename = f"run-{run_id}-epochs.{fmt}"
    headers = {"Content-Disposition": f'attachment; filename="{filename}"'}
    if fmt == "csv":
        return Response(epochs_csv(records), media_type="text/csv; charset=utf-8", headers=headers)
    body = {
        "run": store.run_public(run).model_dump(mode="json"),
        "epochs": [r.model_dump(mode="json") for r in records],
    }
    return Response(json.dumps(body), media_type="application/json", headers=headers)


@router.get("/runs/{run_id}/epochs.csv", dependencies=[HEAVY_READ])
def export_csv(run_id: RunId, session: SessionDep, _can: CanReadRun) -> Response:
    return download(run_id, "csv", session=session)


@router.get("/runs/{run_id}/epochs.json", dependencies=[HEAVY_READ])
def export_json(run_id: RunId, session: SessionDep, _can: CanReadRun) -> Response:
    """The run and all its epochs (with spectra and histograms) as one JSON document."""
    return download(run_id, "json", session=session)
