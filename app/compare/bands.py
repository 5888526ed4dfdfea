"""Mean ± std bands over the runs of a group, for the three x axes of the compare page.

- epochs: runs share their x values, so the band is aligned on x exactly (:func:`mean_std_band`);
- steps (SDK scalars): runs may log at different steps, and long series come back downsampled with
  per-run x values, so past ``max_bins`` distinct steps the band is taken over equal-width bins of x
  (:func:`binned_band`);
- wall time: no two runs share a time, so the band is aligned on epochs and each point sits at the
  mean wall time of the runs that reached it (:func:`timed_band`).

Every function is linear in the number of points it is given (issue 19 times the page at 100 runs).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from app.compare.groups import is_finite_number

Series = Mapping[float, float | None]


@dataclass(frozen=True)
class Band:
    """Mean and sample standard deviation across runs at each x (n = runs that have that x)."""

    x: list[float]
    mean: list[float]
    std: list[float]
    n: list[int]


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample (n - 1) standard deviation; the std of a single value is 0."""
    n = len(values)
    if n == 0:
        raise ValueError("mean_std needs at least one value")
    mean = math.fsum(values) / n
    if n == 1:
        return mean, 0.0
    var = math.fsum((v - mean) ** 2 for v in values) / (n - 1)
    return mean, math.sqrt(var)


@dataclass(frozen=True)
class Final:
    """Each run's own final value (its last point, wherever it stopped: early stopping ends runs at
    different epochs), summarized over the runs of a group: ``n`` of ``runs`` had a value; ``std`` is
    over those ``n`` and None below two; ``x_min``/``x_max`` are the runs' last x values."""

    runs: int
    n: int
    mean: float | None = None
    std: float | None = None
    x_min: float | None = None
    x_max: float | None = None


def final_values(series: Sequence[Series]) -> Final:
    """Mean ± std of each series' last finite value (see :class:`Final`)."""
    lasts: list[tuple[float, float]] = []
    for s in series:
        points = [(x, float(v)) for x, v in s.items() if is_finite_number(v)]  # type: ignore[arg-type]
        if points:
            lasts.append(max(points))
    if not lasts:
        return Final(len(series), 0)
    mean, std = mean_std([v for _, v in lasts])
    xs = [x for x, _ in lasts]
    return Final(len(series), len(lasts), mean, std if len(lasts) > 1 else None, min(xs), max(xs))


def _band(cells: Mapping[float, list[float]], positions: Mapping[float, float] | None = None) -> Band:
    band = Band([], [], [], [])
    for x in sorted(cells):
        mean, std = mean_std(cells[x])
        band.x.append(x if positions is None else positions[x])
        band.mean.append(mean)
        band.std.append(std)
        band.n.append(len(cells[x]))
    return band


def mean_std_band(series: Sequence[Series]) -> Band:
    """Aligned by x (epoch): at each x, mean ± std over the series that have a finite value there."""
    cells: dict[float, list[float]] = {}
    isfinite = math.isfinite
    for s in series:
        for x, v in s.items():
            # floats (what curves hold) take the short test; anything else the full one
            if isfinite(v) if type(v) is float else is_finite_number(v):
                cells.setdefault(x, []).append(float(v))  # type: ignore[arg-type]
    return _band(cells)


def binned_band(series: Sequence[Series], max_bins: int) -> Band:
    """Like :func:`mean_std_band` while there are at most ``max_bins`` distinct x values; past that,
    x is cut into ``max_bins`` equal-width bins: each run contributes the mean of its points in a bin,
    and the band's point sits at the mean x of those points."""
    if max_bins < 1:
        raise ValueError("max_bins must be at least 1")
    xs = {x for s in series for x, v in s.items() if is_finite_number(v)}
    if len(xs) <= max_bins:
        return mean_std_band(series)
    lo, hi = min(xs), max(xs)
    width = (hi - lo) / max_bins
    cells: dict[float, list[float]] = {}
    where: dict[float, list[float]] = {}
    for s in series:
        sums: dict[int, tuple[float, float, int]] = {}
        for x, v in s.items():
            if not is_finite_number(v):
                continue
            b = min(int((x - lo) / width), max_bins - 1)
            sy, sx, n = sums.get(b, (0.0, 0.0, 0))
            sums[b] = (sy + float(v), sx + x, n + 1)  # type: ignore[arg-type]
        for b, (sy, sx, n) in sums.items():
            cells.setdefault(b, []).append(sy / n)
            where.setdefault(b, []).append(sx / n)
    return _band(cells, {b: math.fsum(xs_) / len(xs_) for b, xs_ in where.items()})


def timed_band(series: Sequence[Series], clocks: Sequence[Mapping[float, float]]) -> Band:
    """Aligned on epochs (the keys of each series), placed at the mean wall time (``clocks``: per
    series, epoch -> seconds) of the runs with a value there. Points without a clock are skipped."""
    cells: dict[float, list[float]] = {}
    times: dict[float, list[float]] = {}
    for s, clock in zip(series, clocks, strict=True):
        for epoch, v in s.items():
            if is_finite_number(v) and epoch in clock:
                cells.setdefault(epoch, []).append(float(v))  # type: ignore[arg-type]
                times.setdefault(epoch, []).append(clock[epoch])
    return _band(cells, {e: math.fsum(t) / len(t) for e, t in times.items()})
