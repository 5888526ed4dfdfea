"""The compare page's view: what the URL asks for (:class:`CompareQuery`) and the data it needs
(:func:`build_compare`), loaded with a handful of queries and aggregated by :mod:`app.compare.groups`.

The whole view lives in the query string, so a comparison can be bookmarked and shared:
``/compare?runs=1,2&sweep=abc&stat=mean_sv&group=regularizer&x=batch_size&metric=mean_sv
&line=regularizer&epoch=&layer=`` (``epoch`` empty = the newest epoch every run reached; ``layer``
empty = the default embedding, else the curves show that named layer's statistic).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.compare.groups import (
    Band,
    DiffRow,
    Group,
    SweepLine,
    aligned_epoch,
    config_diff,
    group_runs,
    mean_std_band,
    numeric_keys,
    sweep_lines,
)
from app.models import Epoch, Run
from app.series.epochs import layer_curves
from app.series.query import EPOCH_COLUMNS, load_series

MAX_RUNS = 200
SUMMARY_KEYS = ("best_val_acc", "best_recall_at_1")
DEFAULTS = {"stat": "mean_sv", "metric": "mean_sv", "line": "regularizer"}


def _split(values: Sequence[str]) -> list[str]:
    return [part.strip() for value in values for part in value.split(",") if part.strip()]


@dataclass(frozen=True)
class CompareQuery:
    runs: list[int] = field(default_factory=list)
    sweeps: list[str] = field(default_factory=list)
    stat: str = DEFAULTS["stat"]
    group: list[str] = field(default_factory=list)
    x: str = ""
    metric: str = DEFAULTS["metric"]
    line: str = DEFAULTS["line"]
    epoch: int | None = None
    layer: str = ""

    @classmethod
    def from_params(cls, params: Mapping[str, list[str]]) -> tuple[CompareQuery, dict[str, str]]:
        """Parse the query string (repeated or comma-separated values); bad parts are reported and
        dropped, never fatal."""
        problems: dict[str, str] = {}
        ids: list[int] = []
        for part in _split(params.get("runs", []) + params.get("run", [])):
            if part.isdigit():
                ids.append(int(part))
            else:
                problems["runs"] = f"{part!r} is not a run id (whole numbers, comma-separated)"
        epoch: int | None = None
        raw_epoch = (params.get("epoch") or [""])[-1].strip()
        if raw_epoch and raw_epoch != "last":
            if raw_epoch.isdigit():
                epoch = int(raw_epoch)
            else:
                problems["epoch"] = f"{raw_epoch!r} is not an epoch; use a whole number or leave it empty"

        def one(name: str) -> str:
            return (params.get(name) or [DEFAULTS.get(name, "")])[-1].strip()

        query = cls(
            runs=list(dict.fromkeys(ids)),
            sweeps=list(dict.fromkeys(_split(params.get("sweep", [])))),
            stat=one("stat") or DEFAULTS["stat"],
            group=list(dict.fromkeys(_split(params.get("group", [])))),
            x=one("x"),
            metric=one("metric") or DEFAULTS["metric"],
            line=one("line"),
            epoch=epoch,
            layer=one("layer")[:128],
        )
        return query, problems

    def url(self, **changes: Any) -> str:
        """This view as a URL, with ``changes`` applied (for links and the canonical address)."""
        data = {
            "runs": ",".join(map(str, self.runs)),
            "sweep": ",".join(self.sweeps),
            "stat": self.stat,
            "group": ",".join(self.group),
            "x": self.x,
            "metric": self.metric,
            "line": self.line,
            "epoch": "" if self.epoch is None else str(self.epoch),
            "layer": self.layer,
        }
        for key, value in changes.items():
            data[key] = ",".join(map(str, value)) if isinstance(value, list) else str(value)
        return "/compare?" + urlencode({k: v for k, v in data.items() if v})


@dataclass
class CompareData:
    runs: list[Run]
    curves: dict[int, dict[int, float]]
    groups: list[Group]
    bands: list[Band]
    sweep: list[SweepLine]
    upper_bound: list[tuple[Any, float]]
    diff: list[DiffRow]
    hist_epoch: int | None
    hists: dict[int, dict[str, Any]]
    stat_choices: list[str]
    key_choices: list[str]
    x_choices: list[str]
    x: str
    truncated: bool = False


def _select_runs(session: Session, query: CompareQuery, visible: list[int] | None) -> tuple[list[Run], bool]:
    stmt = select(Run) if visible is None else select(Run).where(Run.project_id.in_(visible))
    if query.runs and query.sweeps:
        stmt = stmt.where(Run.id.in_(query.runs) | Run.sweep_id.in_(query.sweeps))
    elif query.runs:
        stmt = stmt.where(Run.id.in_(query.runs))
    elif query.sweeps:
        stmt = stmt.where(Run.sweep_id.in_(query.sweeps))
    else:
        return [], False
    runs = list(session.scalars(stmt.order_by(Run.id).limit(MAX_RUNS + 1)).unique())
    return runs[:MAX_RUNS], len(runs) > MAX_RUNS


def _final_rows(session: Session, runs: Sequence[Run]) -> dict[int, dict[str, Any]]:
    """Each run's newest epoch: the statistic columns and the metrics."""
    columns = [getattr(Epoch, name) for name in EPOCH_COLUMNS]
    stmt = (
        select(Epoch.run_id, Epoch.metrics, *columns)
        .join(Run, (Run.id == Epoch.run_id) & (Run.last_epoch == Epoch.epoch))
        .where(Epoch.run_id.in_([r.id for r in runs]))
    )
    finals: dict[int, dict[str, Any]] = {}
    for row in session.execute(stmt):
        values = dict(row.metrics or {}) | {name: getattr(row, name) for name in EPOCH_COLUMNS}
        finals[row.run_id] = values
    return finals


def _final_value(run: Run, finals: Mapping[int, Mapping[str, Any]], metric: str) -> Any:
    if metric in SUMMARY_KEYS:
        return (run.summary or {}).get(metric)
    return finals.get(run.id, {}).get(metric)


def build_compare(
    *, session: Session, query: CompareQuery, visible: list[int] | None = None, max_points: int = 500
) -> CompareData:
    """Everything the page draws; ``visible`` limits the runs to readable projects (None = all)."""
    runs, truncated = _select_runs(session, query, visible)
    ids = [r.id for r in runs]
    configs = [r.config or {} for r in runs]
    if query.layer and query.stat in EPOCH_COLUMNS:  # a named layer's statistic (per-layer collapse)
        curves = layer_curves(session=session, run_ids=ids, layer=query.layer, key=query.stat)
    else:
        series = (
            load_series(session=session, run_ids=ids, key=query.stat, max_points=max_points) if ids else []
        )
        curves = {s.run: {p.x: p.y for p in s.points} for s in series}
    groups = group_runs(((r.id, r.config or {}) for r in runs), query.group)
    bands = [mean_std_band([curves.get(i, {}) for i in g.run_ids]) for g in groups]
    finals = _final_rows(session, runs) if ids else {}
    x_choices = numeric_keys(configs)
    x = query.x or (x_choices[0] if x_choices else "")
    points = [
        (r.config.get(query.line), r.config.get(x), _final_value(r, finals, query.metric)) for r in runs
    ]
    sweep = sweep_lines(points, query.line) if x else []
    upper: dict[Any, float] = {}
    for run in runs:
        final = finals.get(run.id, {})
        if final.get("sv_upper") is not None and run.config.get(x) is not None:
            upper[run.config[x]] = max(upper.get(run.config[x], 0.0), float(final["sv_upper"]))
    hist_epoch = aligned_epoch(query.epoch, [r.last_epoch for r in runs])
    hists: dict[int, dict[str, Any]] = {}
    if hist_epoch is not None:
        stmt = select(Epoch.run_id, Epoch.std_hist).where(Epoch.run_id.in_(ids), Epoch.epoch == hist_epoch)
        hists = {run_id: hist for run_id, hist in session.execute(stmt) if hist}
    metric_names = sorted({k for f in finals.values() for k in f} - set(EPOCH_COLUMNS))
    return CompareData(
        runs=runs,
        curves=curves,
        groups=groups,
        bands=bands,
        sweep=sweep,
        upper_bound=sorted(upper.items()) if query.metric == "mean_sv" else [],
        diff=config_diff(configs),
        hist_epoch=hist_epoch,
        hists=hists,
        stat_choices=[*EPOCH_COLUMNS, *metric_names],
        key_choices=sorted({k for c in configs for k in c}),
        x_choices=x_choices,
        x=x,
        truncated=truncated,
    )


def page_data(query: CompareQuery, data: CompareData) -> dict[str, Any]:
    """The compare page's chart data (also what a pinned report keeps)."""
    group_of = {run_id: i for i, g in enumerate(data.groups) for run_id in g.run_ids}
    return {
        "stat": query.stat,
        "layer": query.layer,
        "metric": query.metric,
        "x": data.x,
        "line": query.line,
        "hist_epoch": data.hist_epoch,
        "runs": [
            {"id": r.id, "name": r.name or f"run {r.id}", "group": group_of.get(r.id, 0)} for r in data.runs
        ],
        "curves": {str(k): sorted(v.items()) for k, v in data.curves.items()},
        "groups": [
            {"label": g.label, "runs": g.run_ids, "x": b.x, "mean": b.mean, "std": b.std, "n": b.n}
            for g, b in zip(data.groups, data.bands, strict=True)
        ],
        "sweep": [{"label": s.label, "x": s.x, "mean": s.mean, "std": s.std, "n": s.n} for s in data.sweep],
        "upper_bound": data.upper_bound,
        "hists": {str(k): v for k, v in data.hists.items()},
    }
