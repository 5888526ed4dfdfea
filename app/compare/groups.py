"""Config diffs and grouping behind the compare page: which keys differ, what to group by, and the
runs of each group.

Plain functions over plain data (ids, config dicts) so they are tested without a database and reused
by the page, the reports and the bench. Bands live in :mod:`app.compare.bands`, the sweep plot in
:mod:`app.compare.sweep`.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

MISSING = "—"
SEED_KEY = "seed"


@dataclass(frozen=True)
class DiffRow:
    key: str
    values: list[Any]
    differs: bool


@dataclass
class Group:
    label: str
    values: dict[str, Any]
    run_ids: list[int] = field(default_factory=list)


def config_diff(configs: Sequence[Mapping[str, Any]]) -> list[DiffRow]:
    """One row per key seen in any config, values in input order; ``differs`` if not all equal.

    A key absent from a config shows as an em dash and counts as a difference. Rows are sorted by
    key, so the page can list differing rows first by a stable second sort.
    """
    keys = sorted({k for config in configs for k in config})
    rows: list[DiffRow] = []
    for key in keys:
        values = [config.get(key, MISSING) for config in configs]
        first = canon(values[0])
        differs = any(canon(v) != first for v in values[1:])
        rows.append(DiffRow(key, values, differs))
    return rows


def differing_keys(rows: Iterable[DiffRow]) -> list[str]:
    """The keys whose values differ between the runs (sorted, as :func:`config_diff` returns them)."""
    return [row.key for row in rows if row.differs]


def default_group_keys(rows: Iterable[DiffRow]) -> list[str]:
    """What a sweep was swept over: the differing keys other than ``seed`` (seeds are what the
    mean ± std of a group runs over). Empty when only seeds differ: then all runs form one group."""
    return [key for key in differing_keys(rows) if key != SEED_KEY]


def canon(value: Any) -> Hashable:
    """A comparable form: 0.1 == 0.1000, 1 == 1.0, lists compare by content."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int | float):
        return round(float(value), 12)
    if isinstance(value, list | tuple):
        return tuple(canon(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((k, canon(v)) for k, v in value.items()))
    return str(value)


def format_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    if value is None:
        return "null"
    return str(value)


def group_label(keys: Sequence[str], values: Sequence[Any]) -> str:
    """``regularizer=svmax, lr=0.1``; ``all runs`` when there are no keys."""
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
        key = tuple(canon(v) for v in values)
        if key not in groups:
            groups[key] = Group(group_label(keys, values), dict(zip(keys, values, strict=True)))
        groups[key].run_ids.append(run_id)
    return list(groups.values())


def is_finite_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def is_numeric_key(configs: Iterable[Mapping[str, Any]], key: str) -> bool:
    """Whether ``key`` holds a finite number in every config that has it (and in at least one)."""
    seen = False
    for config in configs:
        if key in config:
            if not is_finite_number(config[key]):
                return False
            seen = True
    return seen


def numeric_keys(configs: Sequence[Mapping[str, Any]]) -> list[str]:
    """Config keys whose values are numbers in every config that has them and differ somewhere
    (``seed`` excepted): the candidates for a numeric sweep axis."""
    return [
        key
        for key in differing_keys(config_diff(configs))
        if key != SEED_KEY and is_numeric_key(configs, key)
    ]


def aligned_epoch(requested: int | None, last_epochs: Iterable[int | None]) -> int | None:
    """The epoch to show for every run's histogram: the requested one, or (None = "last") the
    newest epoch all runs have reached. None when no run has any epoch."""
    lasts = [e for e in last_epochs if e is not None]
    if not lasts:
        return None
    if requested is not None:
        return requested
    return min(lasts)
