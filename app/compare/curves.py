"""The compare page's per-run curves against the chosen x axis, and the group bands over them.

- ``epoch``: epoch records (collapse statistics and epoch metrics); x = epoch.
- ``step``: scalars logged by the SDK (``run.log``); x = step.
- ``time``: epoch records placed at their wall time: seconds from the run's start (its claim, or
  its first epoch record when that came earlier, as after a retried attempt) to ``recorded_at``.

With no axis asked for, epochs are used unless the statistic exists only as SDK scalars. An axis
with nothing to show for the statistic falls back to the other source, with a message saying so
(and the resolved axis is what the canonical URL records).

With a ``layer`` named (per-layer collapse), a collapse statistic's curves are that layer's values from
the epoch records (:func:`app.series.epochs.layer_curves`), by epoch or wall time.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.compare.bands import Band, Final, binned_band, final_values, mean_std_band, timed_band
from app.compare.groups import Group
from app.models import Epoch, Run
from app.series.epochs import SCALAR_STATS, layer_curves
from app.series.query import load_series

MAX_BAND_BINS = 200
AXIS_TITLES = {"epoch": "epoch", "step": "step", "time": "wall time"}


@dataclass
class Curves:
    xaxis: str
    by_run: dict[int, dict[float, float]]
    by_epoch: dict[int, dict[float, float]] = field(default_factory=dict)  # time axis: epoch -> y
    clocks: dict[int, dict[float, float]] = field(default_factory=dict)  # time axis: epoch -> s
    problem: str = ""


def _load(
    *, session: Session, run_ids: Sequence[int], key: str, source: str, max_points: int
) -> dict[int, dict[float, float]]:
    series = load_series(
        session=session,
        run_ids=run_ids,
        key=key,
        max_points=max_points,
        source="metric" if source == "step" else "epoch",
    )
    return {s.run: {p.x: p.y for p in s.points} for s in series if s.points}


def epoch_clocks(
    *, session: Session, started: Mapping[int, datetime | None]
) -> dict[int, dict[float, float]]:
    """Per run (the keys of ``started``: run id -> its ``started_at``), epoch -> seconds since the
    run started (see the module docstring)."""
    stmt = select(Epoch.run_id, Epoch.epoch, Epoch.recorded_at).where(Epoch.run_id.in_(list(started)))
    rows = session.execute(stmt).all()
    origin: dict[int, datetime] = {}
    for run_id, _epoch, recorded in rows:
        first = origin.get(run_id) or started[run_id] or recorded
        origin[run_id] = min(first, recorded)
    clocks: dict[int, dict[float, float]] = {}
    for run_id, epoch, recorded in rows:
        clocks.setdefault(run_id, {})[epoch] = (recorded - origin[run_id]).total_seconds()
    return clocks


def load_curves(
    *,
    session: Session,
    runs: Sequence[Run],
    key: str,
    xaxis: str | None,
    max_points: int,
    layer: str = "",
) -> Curves:
    """Each run's downsampled curve of ``key`` against ``xaxis`` (None = automatic), of the named
    ``layer`` when one is given and ``key`` is a collapse statistic."""
    run_ids = [r.id for r in runs]
    if not run_ids:
        return Curves(xaxis or "epoch", {})
    problem = ""
    by_layer = bool(layer) and key in SCALAR_STATS
    source = "step" if xaxis == "step" and not by_layer else "epoch"
    if by_layer:
        if xaxis == "step":
            problem = f"layer statistics are recorded per epoch: showing {layer}'s {key} by epoch"
        found_layer = layer_curves(session=session, run_ids=run_ids, layer=layer, key=key)
        by_x = {run: {float(e): y for e, y in points.items()} for run, points in found_layer.items()}
    else:
        by_x = _load(session=session, run_ids=run_ids, key=key, source=source, max_points=max_points)
    if not by_x and not by_layer:
        other = "epoch" if source == "step" else "step"
        found = _load(session=session, run_ids=run_ids, key=key, source=other, max_points=max_points)
        if found:
            if xaxis is not None:
                problem = (
                    f"no run has {key} by {xaxis}: showing it by {other} "
                    "(SDK scalars have steps; epoch records have epochs and wall times)"
                )
            source, by_x = other, found
    if source == "step":
        return Curves("step", by_x, problem=problem)
    if xaxis != "time":
        return Curves("epoch", by_x, problem=problem)
    clocks = epoch_clocks(session=session, started={r.id: r.started_at for r in runs if r.id in by_x})
    timed = {
        run: {clocks[run][e]: y for e, y in points.items() if e in clocks.get(run, {})}
        for run, points in by_x.items()
    }
    return Curves("time", timed, by_epoch=by_x, clocks=clocks, problem=problem)


def group_bands(curves: Curves, groups: Sequence[Group]) -> list[Band]:
    """Mean ± std per group on the curves' x axis (see :mod:`app.compare.bands`)."""
    bands: list[Band] = []
    for group in groups:
        if curves.xaxis == "time":
            ids = [i for i in group.run_ids if i in curves.by_epoch]
            bands.append(
                timed_band([curves.by_epoch[i] for i in ids], [curves.clocks.get(i, {}) for i in ids])
            )
        elif curves.xaxis == "step":
            bands.append(binned_band([curves.by_run.get(i, {}) for i in group.run_ids], MAX_BAND_BINS))
        else:
            bands.append(mean_std_band([curves.by_run.get(i, {}) for i in group.run_ids]))
    return bands


def group_finals(curves: Curves, groups: Sequence[Group]) -> list[Final]:
    """Per group, each run's own last value on the curves (mean ± std over the runs that have one):
    what the group table shows, so a run that stopped early counts with its final value."""
    return [final_values([curves.by_run.get(i, {}) for i in group.run_ids]) for group in groups]
