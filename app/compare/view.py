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

from app.compare.bands import Band, Final
from app.compare.curves import Curves, group_bands, group_finals, load_curves
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
from app.series.epochs import SCALAR_STATS
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
    finals: list[Final]  # per group: each run's own last value of the curves' statistic
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


def _trashed(*, session: Session, named: set[int], visible: list[int] | None) -> list[int]:
    """Of the runs a view names but does not show, those in the trash of a project the caller reads."""
    if not named:
        return []
    stmt = select(Run.id).where(Run.id.in_(named), Run.deleted_at.is_not(None))
    if visible is not None:
        stmt = stmt.where(Run.project_id.in_(visible))
    return sorted(session.scalars(stmt))


def _final_rows(*, session: Session, runs: Sequence[Run]) -> tuple[dict[int, dict[str, Any]], list[str]]:
    """Each run's newest epoch: the statistic columns, the metrics and (under ``LAYERS``) its layers'
    statistics; and the names of the layers those epochs recorded statistics for."""
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
        finals[row.run_id] = values | {LAYERS: row.layers or {}}
        layers.update(row.layers or {})
    return finals, sorted(layers)


LAYERS = "\x00layers"  # a key no metric can have (metric keys match [A-Za-z0-9_][A-Za-z0-9_.\-/]*)


def _final_value(run: Run, finals: Mapping[int, Mapping[str, Any]], metric: str, layer: str = "") -> Any:
    """A run's final ``metric``: a summary key from the run, else its newest epoch's value; a collapse
    statistic of the named ``layer`` when one is given (as the curves: ``embedding`` falls back to
    the default statistics where a run recorded no layers)."""
    if metric in SUMMARY_KEYS:
        return (run.summary or {}).get(metric)
    final = finals.get(run.id, {})
    if layer and metric in SCALAR_STATS:
        found = final.get(LAYERS, {}).get(layer)
        return found.get(metric) if found else (final.get(metric) if layer == "embedding" else None)
    return final.get(metric)


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
    runs: Sequence[Run], finals: Mapping[int, Mapping[str, Any]], axes: SweepAxes, layer: str = ""
) -> list[tuple[Any, float]]:
    """The largest SVMax upper bound U reached at each x value (drawn with the mean_sv sweep), of the
    named ``layer`` when one is given."""
    upper: dict[Any, float] = {}
    for run in runs:
        value = _final_value(run, finals, "sv_upper", layer)
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
    trashed = _trashed(session=session, named=set(query.runs) - set(ids), visible=visible)
    if trashed:
        which = ", ".join(f"#{run_id}" for run_id in trashed)
        problems["trash"] = (
            f"run{'s' if len(trashed) > 1 else ''} {which} in the trash: not shown (restore to compare)"
        )
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
        ([c.get(k) for k in axes.lines], c.get(axes.x), _final_value(r, finals, query.metric, query.layer))
        for r, c in zip(runs, configs, strict=True)
    ]
    sweep = sweep_lines(points, axes.lines, categorical=axes.categorical) if axes.x else []
    hist_epoch = aligned_epoch(query.epoch, [r.last_epoch for r in runs])
    hists: dict[int, dict[str, Any]] = {}
    if hist_epoch is not None:
        hists = _hists(session=session, run_ids=ids, epoch=hist_epoch, layer=query.layer)
    metric_names = sorted({k for f in finals.values() for k in f} - {*EPOCH_COLUMNS, LAYERS})
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
        finals=group_finals(curves, groups),
        axes=axes,
        sweep=sweep,
        upper_bound=_upper_bound(runs, finals, axes, query.layer)
        if query.metric == "mean_sv" and axes.x
        else [],
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


def stat_layer(layer: str, key: str) -> str:
    """The layer whose ``key`` a chart shows: ``layer`` for a collapse statistic, else "" (metrics
    such as recall_at_1 are per run, not per layer)."""
    return layer if key in SCALAR_STATS else ""


def page_data(data: CompareData) -> dict[str, Any]:
    """The compare page's chart data and view settings (also what a pinned report keeps)."""
    view = data.view
    group_of = {run_id: i for i, g in enumerate(data.groups) for run_id in g.run_ids}
    return {
        "stat": view.stat,
        "layer": view.layer,
        "metric": view.metric,
        # the layer each chart's statistic is of ("" = the default embedding, or not a statistic)
        "stat_layer": stat_layer(view.layer, view.stat),
        "metric_layer": stat_layer(view.layer, view.metric),
        "x": data.axes.x,
        "x_kind": "categorical" if data.axes.categorical else "numeric",
        "line": ",".join(data.axes.lines),
        "lines": data.axes.lines,
        "group": view.group or [],
        "xaxis": data.curves.xaxis,
        "smooth": view.smooth,
        "logy": view.logy,
        "hist_epoch": data.hist_epoch,
        "hist_epoch_auto": view.epoch is None,  # the newest epoch every run reached
        "runs": [
            {"id": r.id, "name": r.name or f"run {r.id}", "group": group_of.get(r.id, 0)} for r in data.runs
        ],
        "curves": {str(k): sorted(v.items()) for k, v in data.curves.by_run.items()},
        "groups": [
            {
                "label": g.label,
                "runs": g.run_ids,
                "x": b.x,
                "mean": b.mean,
                "std": b.std,
                "n": b.n,
                "final": dataclasses.asdict(f),
            }
            for g, b, f in zip(data.groups, data.bands, data.finals, strict=True)
        ],
        "sweep": [{"label": s.label, "x": s.x, "mean": s.mean, "std": s.std, "n": s.n} for s in data.sweep],
        "upper_bound": data.upper_bound,
        "hists": {str(k): v for k, v in data.hists.items()},
    }
