"""The sweep plot: a final metric against one swept config key, one line per combination of the
other swept keys, error bars over the runs (seeds) that share a point.

By default the x axis is the first numeric swept key (``lr``, ``batch_size`` …), or the first
categorical one (``regularizer``) when nothing numeric was swept; then the axis is categorical.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from app.compare.bands import mean_std
from app.compare.groups import canon, format_value, group_label, is_finite_number, is_numeric_key


@dataclass(frozen=True)
class SweepAxes:
    x: str  # "" = no sweep plot (nothing but seeds differs)
    lines: list[str]
    categorical: bool


@dataclass(frozen=True)
class SweepLine:
    label: str
    x: list[Any]
    mean: list[float]
    std: list[float]
    n: list[int]


def sweep_axes(
    configs: Sequence[Mapping[str, Any]],
    swept: Sequence[str],
    *,
    x: str = "",
    lines: Sequence[str] | None = None,
) -> SweepAxes:
    """The sweep plot's x key and line keys.

    ``x`` (when given) wins; otherwise the first numeric key of ``swept``, else its first key.
    ``lines`` (when given, even empty) wins; otherwise the keys of ``swept`` other than x.
    """
    if not x:
        numeric = [k for k in swept if is_numeric_key(configs, k)]
        x = numeric[0] if numeric else (swept[0] if swept else "")
    chosen = [k for k in swept if k != x] if lines is None else [k for k in lines if k != x]
    return SweepAxes(x, chosen, bool(x) and not is_numeric_key(configs, x))


def _order(value: Any) -> tuple[int, float, str]:
    if is_finite_number(value):
        return (0, float(value), "")
    return (1, 0.0, format_value(value))


def sweep_lines(
    points: Iterable[tuple[Sequence[Any], Any, float | None]],
    line_keys: Sequence[str] = (),
    *,
    categorical: bool = False,
) -> list[SweepLine]:
    """Points ``(line values, x value, y)`` -> one line per combination of line values, mean ± std
    of y over the runs sharing (line, x), x sorted (numbers by value, then the rest by name).

    Points with a non-finite y are skipped, and so are points whose x is not a finite number on a
    numeric axis. On a categorical axis x values become their labels (``true``, ``svmax``, ``null``).
    """
    cells: dict[Hashable, dict[Hashable, tuple[Any, list[float]]]] = {}
    labels: dict[Hashable, str] = {}
    for values, x, y in points:
        if not is_finite_number(y) or (not categorical and not is_finite_number(x)):
            continue
        key = tuple(canon(v) for v in values)
        labels.setdefault(key, group_label(line_keys, values))
        cell = cells.setdefault(key, {}).setdefault(canon(x), (x, []))
        cell[1].append(float(y))  # type: ignore[arg-type]
    out: list[SweepLine] = []
    for line, by_x in cells.items():
        ordered = sorted(by_x.values(), key=lambda c: _order(c[0]))
        stats = [mean_std(ys) for _, ys in ordered]
        out.append(
            SweepLine(
                labels[line],
                [format_value(x) if categorical else x for x, _ in ordered],
                [m for m, _ in stats],
                [s for _, s in stats],
                [len(ys) for _, ys in ordered],
            )
        )
    return sorted(out, key=lambda line: line.label)
