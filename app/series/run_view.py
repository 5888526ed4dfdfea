"""Data for the run page: compact per-epoch chart rows, collapse alerts, status history.

The same row shape is what the page's JavaScript builds from an SSE ``epoch`` event, so the first
render and the live updates feed one plotting function.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.models import EPOCH_STAT_COLUMNS, Epoch, MetricChunk, RunEvent
from app.runs.alert import CollapseAlert, EpochPoint, detect_collapse
from app.series.query import load_series
from collapsewatch.layers import layer_names

SCALARS = EPOCH_STAT_COLUMNS
MAX_EPOCH_ROWS = 2000
LAYER_ROW_KEYS = (*SCALARS, "std_hist", "singular_values")


def epoch_rows(*, session: Session, run_id: int, limit: int = MAX_EPOCH_ROWS) -> list[dict[str, Any]]:
    """The newest ``limit`` epochs, oldest first: scalars, metrics, histogram counts and spectrum, and
    ``layers``: the same per named layer (``{name: {scalars…, std_hist, singular_values}}``)."""
    columns = [getattr(Epoch, name) for name in SCALARS]
    stmt = (
        select(Epoch.epoch, Epoch.metrics, Epoch.std_hist, Epoch.singular_values, Epoch.layers, *columns)
        .where(Epoch.run_id == run_id)
        .order_by(Epoch.epoch.desc())
        .limit(limit)
    )
    rows = []
    for row in reversed(session.execute(stmt).all()):
        item: dict[str, Any] = {"epoch": row.epoch, "metrics": row.metrics or {}}
        item |= {name: getattr(row, name) for name in SCALARS}
        item["std_hist"] = row.std_hist
        item["singular_values"] = row.singular_values
        item["layers"] = {
            name: {key: stats.get(key) for key in LAYER_ROW_KEYS}
            for name, stats in (row.layers or {}).items()
        }
        rows.append(item)
    return rows


def layer_order(config: dict[str, Any], rows: list[dict[str, Any]]) -> list[str]:
    """The named layers the rows hold, input to output for an engine job (its model's order), else
    in the order they were first logged (SDK runs)."""
    seen: list[str] = []
    for row in rows:
        seen.extend(name for name in row.get("layers", {}) if name not in seen)
    known = layer_names(str(config.get("model", "")), str(config.get("objective", "")))
    ordered = [name for name in known if name in seen]
    return ordered + [name for name in seen if name not in ordered]


def alerts_for(rows: list[dict[str, Any]], *, rho_threshold: float) -> list[CollapseAlert]:
    points = [EpochPoint(r["epoch"], r.get("sv_position"), r.get("dead_dims")) for r in rows]
    return detect_collapse(points, rho_threshold=rho_threshold)


def alerts_from_db(*, session: Session, run_id: int, rho_threshold: float) -> list[CollapseAlert]:
    stmt = select(Epoch.epoch, Epoch.sv_position, Epoch.dead_dims).where(Epoch.run_id == run_id)
    points = [EpochPoint(e, rho, dead) for e, rho, dead in session.execute(stmt).all()]
    return detect_collapse(points, rho_threshold=rho_threshold)


def metric_keys(rows: list[dict[str, Any]]) -> dict[str, list[str]]:
    """Metric names split into losses and accuracies (for the two charts), others kept apart."""
    keys = sorted({k for r in rows for k in r["metrics"]})
    losses = [k for k in keys if "loss" in k]
    accuracies = [k for k in keys if k.endswith(("acc", "accuracy")) or k.startswith("recall")]
    others = [k for k in keys if k not in losses and k not in accuracies]
    return {"losses": losses, "accuracies": accuracies, "others": others}


def status_history(*, session: Session, run_id: int, limit: int = 200) -> list[RunEvent]:
    """Status changes (queued, each attempt's claim, the finish), oldest first."""
    stmt = (
        select(RunEvent)
        .where(RunEvent.run_id == run_id, RunEvent.type == "status")
        .order_by(RunEvent.id.desc())
        .limit(limit)
    )
    return list(reversed(list(session.scalars(stmt))))


def recent_logs(*, session: Session, run_id: int, limit: int = 500) -> list[RunEvent]:
    stmt = (
        select(RunEvent)
        .where(RunEvent.run_id == run_id, RunEvent.type == "log")
        .order_by(RunEvent.id.desc())
        .limit(limit)
    )
    return list(reversed(list(session.scalars(stmt))))


def logged_scalars(
    *, session: Session, run_id: int, max_keys: int = 12, max_points: int = 500
) -> dict[str, list[tuple[int, float]]]:
    """Free scalars logged by the SDK (``POST /runs/{id}/metrics``), downsampled, first keys only."""
    keys = list(
        session.scalars(
            select(MetricChunk.key)  # the packed copy: one row per 256 steps, not one per point
            .where(MetricChunk.run_id == run_id)
            .group_by(MetricChunk.key)
            .order_by(MetricChunk.key)
            .limit(max_keys)
        )
    )
    found: dict[str, list[tuple[int, float]]] = {}
    for key in keys:
        (series,) = load_series(
            session=session, run_ids=[run_id], key=key, max_points=max_points, source="metric"
        )
        found[key] = [(p.x, p.y) for p in series.points]
    return found


def provenance_view(provenance: dict[str, Any] | None) -> dict[str, Any] | None:
    """The run page's provenance card: ``rows`` of (label, text) and the ``packages`` (name, version),
    from the ``provenance`` an SDK run was created with (None when it has none)."""
    if not provenance:
        return None
    rows: list[tuple[str, str]] = []
    git = provenance.get("git")
    if isinstance(git, dict) and git.get("commit"):
        state = "dirty: uncommitted changes" if git.get("dirty") else "clean"
        rows.append(("git commit", f"{git['commit']} ({state})"))
        if git.get("branch"):
            rows.append(("git branch", str(git["branch"])))
    elif "git" in provenance:
        rows.append(("git commit", "not a git checkout"))
    for key, label in (("command", "command"), ("python", "Python"), ("host", "host"),
                       ("platform", "platform"), ("collapsewatch", "collapsewatch")):  # fmt: skip
        if provenance.get(key):
            rows.append((label, str(provenance[key])))
    raw = provenance.get("packages")
    packages = sorted((str(k), str(v)) for k, v in raw.items()) if isinstance(raw, dict) else []
    return {"rows": rows, "packages": packages}
