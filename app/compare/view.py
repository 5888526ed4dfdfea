"""The compare page's view: the data a :class:`~app.compare.query.CompareQuery` asks for
(:func:`build_compare`), loaded with a handful of queries and aggregated by :mod:`app.compare.groups`,
:mod:`app.compare.bands` and :mod:`app.compare.sweep`.

Whatever the URL leaves automatic (grouping, sweep axes, the x axis) is resolved here and written
back into ``CompareData.view``, whose URL is the page's canonical address and what a report pins.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.compare.bands import Band
from app.compare.curves import Curves, group_bands, load_curves
from app.compare.groups import (
    DiffRow,
    Group,
    aligned_epoch,
    config_diff,
    default_group_keys,
    differing_keys,
    format_value,
    group_runs,
)
from app.compare.query import CompareQuery
from app.compare.sweep import SweepAxes, SweepLine, sweep_axes, sweep_lines
from app.models import Epoch, MetricChunk, Run
from app.runs.visibility import lifecycle_clause
from app.series.query import EPOCH_COLUMNS

MAX_RUNS = 200
MAX_RUN_ID = 2**31 - 1  # ids and epochs are 32-bit integers in the database
SUMMARY_KEYS = ("best_val_acc", "best_recall_at_1")

__all__ = ["SUMMARY_KEYS", "CompareData", "CompareQuery", "build_compare", "page_data"]


@dataclass
class CompareData:
    view: CompareQuery  # the query with its automatic parts resolved
    runs: list[Run]
    curves: Curves
    groups: list[Group]
    bands: list[Band]
    axes: SweepAxes
    sweep: list[SweepLine]
    upper_bound: list[tuple[Any, float]]
    diff: list[DiffRow]
    hist_epoch: int | None
    hists: dict[int, dict[str, Any]]
    stat_choices: list[str]
    key_choices: list[str]
    group_choices: list[str]
    layer_choices: list[str]
    problems: dict[str, str]
    truncated: bool = False

    @property
    def x(self) -> str:
        return self.axes.x


def _select_runs(
    *, session: Session, query: CompareQuery, visible: list[int] | None
) -> tuple[list[Run], bool]:
    stmt = select(Run) if visible is None else select(Run).where(Run.project_id.in_(visible))
    # runs named by id show while archived, not once deleted; a sweep brings its live runs only
    named = Run.id.in_(query.runs) & lifecycle_clause("all")
    swept = Run.sweep_id.in_(query.sweeps) & lifecycle_clause("live")
    if query.runs and query.sweeps:
        stmt = stmt.where(named | swept)
    elif query.runs:
        stmt = stmt.where(named)
    elif query.sweeps:
        stmt = stmt.where(swept)
    else:
        return [], False
    runs = list(session.scalars(stmt.order_by(Run.id).limit(MAX_RUNS + 1)).unique())
    return runs[:MAX_RUNS], len(runs) > MAX_RUNS


def _final_rows(*, session: Session, runs: Sequence[Run]) -> tuple[dict[int, dict[str, Any]], list[str]]:
    """Each run's newest epoch: the statistic columns and the metrics; and the names of the layers
    those epochs recorded statistics for."""
    columns = [getattr(Epoch, name) for name in EPOCH_COLUMNS]
    stmt = (
        select(Epoch.run_id, Epoch.metrics, Epoch.layers, *columns)
        .join(Run, (Run.id == Epoch.run_id) & (Run.last_epoch == Epoch.epoch))
        .where(Epoch.run_id.in_([r.id for r in runs]))
    )
    finals: dict[int, dict[str, Any]] = {}
    layers: set[str] = set()
    for row in session.execute(stmt):
        values = dict(row.metrics or {}) | {name: getattr(row, name) for name in EPOCH_COLUMNS}
        finals[row.run_id] = values
        layers.update(row.layers or {})
    return finals, sorted(layers)


def _final_value(run: Run, finals: Mapping[int, Mapping[str, Any]], metric: str) -> Any:
    if metric in SUMMARY_KEYS:
        return (run.summary or {}).get(metric)
    return finals.get(run.id, {}).get(metric)


def _scalar_keys(*, session: Session, run_ids: Sequence[int]) -> list[str]:
    """The SDK scalar keys these runs logged (one row per packed chunk key: no scan of the points)."""
    stmt = select(MetricChunk.key).where(MetricChunk.run_id.in_(run_ids)).distinct()
    return sorted(session.scalars(stmt))


def _resolve_keys(
    requested: list[str] | None, known: set[str], name: str, problems: dict[str, str]
) -> list[str] | None:
    if requested is None:
        return None
    unknown = [k for k in requested if k not in known]
    if unknown and known:
        problems[name] = (
            f"no run has config key(s) {', '.join(unknown)}; use one of {', '.join(sorted(known))}"
        )
    return requested


def _upper_bound(
    runs: Sequence[Run], finals: Mapping[int, Mapping[str, Any]], axes: SweepAxes
) -> list[tuple[Any, float]]:
    """The largest SVMax upper bound U reached at each x value (drawn with the mean_sv sweep)."""
    upper: dict[Any, float] = {}
    for run in runs:
        value = finals.get(run.id, {}).get("sv_upper")
        x = (run.config or {}).get(axes.x)
        if value is None or x is None:
            continue
        x = format_value(x) if axes.categorical else x
        upper[x] = max(upper.get(x, 0.0), float(value))
    return sorted(upper.items(), key=lambda item: (str(type(item[0])), item[0]))


def build_compare(
    *, session: Session, query: CompareQuery, visible: list[int] | None = None, max_points: int = 500
) -> CompareData:
    """Everything the page draws; ``visible`` limits the runs to readable projects (None = all)."""
    runs, truncated = _select_runs(session=session, query=query, visible=visible)
    ids = [r.id for r in runs]
    configs = [r.config or {} for r in runs]
    diff = config_diff(configs)
    known = {row.key for row in diff}
    problems: dict[str, str] = {}
    group = _resolve_keys(query.group, known, "group", problems)
    lines = _resolve_keys(query.line, known, "line", problems)
    x = query.x
    if x and known and x not in known:
        problems["x"] = f"no run has config key {x!r}; use one of {', '.join(sorted(known))}"
        x = ""
    group_keys = default_group_keys(diff) if group is None else group
    axes = sweep_axes(configs, group_keys, x=x, lines=lines)
    curves = load_curves(
        session=session,
        runs=runs,
        key=query.stat,
        xaxis=query.xaxis,
        max_points=max_points,
        layer=query.layer,
    )
    if curves.problem:
        problems["xaxis"] = curves.problem
    groups = group_runs(zip(ids, configs, strict=True), group_keys)
    finals, layer_names = _final_rows(session=session, runs=runs) if ids else ({}, [])
    points = [
        ([c.get(k) for k in axes.lines], c.get(axes.x), _final_value(r, finals, query.metric))
        for r, c in zip(runs, configs, strict=True)
    ]
    sweep = sweep_lines(points, axes.lines, categorical=axes.categorical) if axes.x else []
    hist_epoch = aligned_epoch(query.epoch, [r.last_epoch for r in runs])
    hists: dict[int, dict[str, Any]] = {}
    if hist_epoch is not None:
        hists = _hists(session=session, run_ids=ids, epoch=hist_epoch, layer=query.layer)
    metric_names = sorted({k for f in finals.values() for k in f} - set(EPOCH_COLUMNS))
    scalar_names = _scalar_keys(session=session, run_ids=ids) if ids else []
    differing = differing_keys(diff)
    view = query
    if runs:
        view = dataclasses.replace(query, group=group_keys, x=axes.x, line=axes.lines, xaxis=curves.xaxis)
    return CompareData(
        view=view,
        runs=runs,
        curves=curves,
        groups=groups,
        bands=group_bands(curves, groups),
        axes=axes,
        sweep=sweep,
        upper_bound=_upper_bound(runs, finals, axes) if query.metric == "mean_sv" and axes.x else [],
        diff=diff,
        hist_epoch=hist_epoch,
        hists=hists,
        stat_choices=list(dict.fromkeys([*EPOCH_COLUMNS, *metric_names, *scalar_names])),
        key_choices=sorted(known),
        group_choices=list(dict.fromkeys([*differing, *(k for k in group_keys if k in known)])),
        layer_choices=list(dict.fromkeys([*layer_names, *([query.layer] if query.layer else [])])),
        problems=problems,
        truncated=truncated,
    )


def _hists(*, session: Session, run_ids: list[int], epoch: int, layer: str) -> dict[int, dict[str, Any]]:
    """Each run's std histogram at ``epoch``: of the named ``layer`` when one is given (a run that
    recorded no layers falls back to its default embedding for ``layer="embedding"``)."""
    stmt = select(Epoch.run_id, Epoch.std_hist, Epoch.layers).where(
        Epoch.run_id.in_(run_ids), Epoch.epoch == epoch
    )
    hists: dict[int, dict[str, Any]] = {}
    for run_id, default, layers in session.execute(stmt):
        found = (layers or {}).get(layer) if layer else None
        hist = found.get("std_hist") if found else (default if layer in ("", "embedding") else None)
        if hist:
            hists[run_id] = hist
    return hists


def page_data(data: CompareData) -> dict[str, Any]:
    """The compare page's chart data and view settings (also what a pinned report keeps)."""
    view = data.view
    group_of = {run_id: i for i, g in enumerate(data.groups) for run_id in g.run_ids}
    return {
        "stat": view.stat,
        "layer": view.layer,
        "metric": view.metric,
        "x": data.axes.x,
        "x_kind": "categorical" if data.axes.categorical else "numeric",
        "line": ",".join(data.axes.lines),
        "lines": data.axes.lines,
        "group": view.group or [],
        "xaxis": data.curves.xaxis,
        "smooth": view.smooth,
        "logy": view.logy,
        "hist_epoch": data.hist_epoch,
        "runs": [
            {"id": r.id, "name": r.name or f"run {r.id}", "group": group_of.get(r.id, 0)} for r in data.runs
        ],
        "curves": {str(k): sorted(v.items()) for k, v in data.curves.by_run.items()},
        "groups": [
            {"label": g.label, "runs": g.run_ids, "x": b.x, "mean": b.mean, "std": b.std, "n": b.n}
            for g, b in zip(data.groups, data.bands, strict=True)
        ],
        "sweep": [{"label": s.label, "x": s.x, "mean": s.mean, "std": s.std, "n": s.n} for s in data.sweep],
        "upper_bound": data.upper_bound,
        "hists": {str(k): v for k, v in data.hists.items()},
    }
