"""Aggregation behind the compare page: grouping, mean +- std bands, sweep lines and config diffs.

Plain functions over plain data (ids, config dicts, ``{epoch: value}`` series) so they are tested
without a database and reused by the page, the bench and anything else that compares runs.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

_MISSING = "—"


@dataclass(frozen=True)
class DiffRow:
    key: str
    values: list[Any]
    differs: bool


@dataclass(frozen=True)
class Band:
    """Mean and sample standard deviation across runs at each x (n = runs that have that x)."""

    x: list[int]
    mean: list[float]
    std: list[float]
    n: list[int]


@dataclass
class Group:
    label: str
    values: dict[str, Any]
    run_ids: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class SweepLine:
    label: str
    x: list[Any]
    mean: list[float]
    std: list[float]
    n: list[int]


def config_diff(configs: Sequence[Mapping[str, Any]]) -> list[DiffRow]:
    """One row per key seen in any config, values in input order; ``differs`` if not all equal.

    A key absent from a config shows as an em dash and counts as a difference. Rows are sorted by
    key, so the page can list differing rows first by a stable second sort.
    """
    keys = sorted({k for config in configs for k in config})
    rows: list[DiffRow] = []
    for key in keys:
        values = [config.get(key, _MISSING) for config in configs]
        differs = any(_canon(v) != _canon(values[0]) for v in values[1:])
        rows.append(DiffRow(key, values, differs))
    return rows


def _canon(value: Any) -> Hashable:
    """A comparable form: 0.1 == 0.1000, 1 == 1.0, lists compare by content."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int | float):
        return round(float(value), 12)
    if isinstance(value, list | tuple):
        return tuple(_canon(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((k, _canon(v)) for k, v in value.items()))
    return str(value)


def format_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if value is None:
        return "null"
    return str(value)


def group_label(keys: Sequence[str], values: Sequence[Any]) -> str:
    if not keys:
        return "all runs"
    return ", ".join(f"{k}={format_value(v)}" for k, v in zip(keys, values, strict=True))


def group_runs(runs: Iterable[tuple[int, Mapping[str, Any]]], keys: Sequence[str]) -> list[Group]:
    """Group ``(run_id, config)`` pairs by the values of ``keys`` (missing keys group as None).

    Groups keep the order in which their first run appears; an empty key list gives one group.
    """
    groups: dict[Hashable, Group] = {}
    for run_id, config in runs:
        values = [config.get(k) for k in keys]
        canon = tuple(_canon(v) for v in values)
        if canon not in groups:
            groups[canon] = Group(group_label(keys, values), dict(zip(keys, values, strict=True)))
        groups[canon].run_ids.append(run_id)
    return list(groups.values())


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


def mean_std_band(series: Sequence[Mapping[int, float | None]]) -> Band:
    """Aligned by x (epoch): at each x, mean +- std over the series that have a finite value there."""
    xs = sorted({x for s in series for x, v in s.items() if _finite(v)})
    band = Band([], [], [], [])
    for x in xs:
        values = [float(v) for s in series if _finite(v := s.get(x))]  # type: ignore[arg-type]
        mean, std = mean_std(values)
        band.x.append(x)
        band.mean.append(mean)
        band.std.append(std)
        band.n.append(len(values))
    return band


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _sort_key(value: Any) -> tuple[int, Any]:
    if _finite(value):
        return (0, float(value))
    return (1, str(value))


def sweep_lines(points: Iterable[tuple[Any, Any, float | None]], line_key: str = "") -> list[SweepLine]:
    """Points ``(line value, x value, y)`` -> one line per line value, x sorted, mean +- std of y
    over the runs (seeds) sharing (line, x). Points with a non-finite y are skipped."""
    cells: dict[Hashable, dict[Hashable, tuple[Any, list[float]]]] = {}
    labels: dict[Hashable, Any] = {}
    for line, x, y in points:
        if not _finite(y):
            continue
        lkey = _canon(line)
        labels.setdefault(lkey, line)
        cell = cells.setdefault(lkey, {}).setdefault(_canon(x), (x, []))
        cell[1].append(float(y))  # type: ignore[arg-type]
    lines: list[SweepLine] = []
    for lkey, by_x in cells.items():
        ordered = sorted(by_x.values(), key=lambda c: _sort_key(c[0]))
        stats = [mean_std(ys) for _, ys in ordered]
        name = format_value(labels[lkey])
        lines.append(
            SweepLine(
                f"{line_key}={name}" if line_key else name,
                [x for x, _ in ordered],
                [m for m, _ in stats],
                [s for _, s in stats],
                [len(ys) for _, ys in ordered],
            )
        )
    return sorted(lines, key=lambda line: line.label)


def aligned_epoch(requested: int | None, last_epochs: Iterable[int | None]) -> int | None:
    """The epoch to show for every run's histogram: the requested one, or (None = "last") the
    newest epoch all runs have reached. None when no run has any epoch."""
    lasts = [e for e in last_epochs if e is not None]
    if not lasts:
        return None
    if requested is not None:
        return requested
    return min(lasts)


def numeric_keys(configs: Sequence[Mapping[str, Any]]) -> list[str]:
    """Config keys whose values are numbers in every config that has them and differ somewhere:
    the candidates for a sweep plot's x axis."""
    rows = config_diff(configs)
    return [
        row.key
        for row in rows
        if row.differs and all(_finite(v) for v in row.values if v != _MISSING) and row.key != "seed"
    ]
