"""Turning what users pass to the SDK into what the wire contract accepts: steps and epochs,
scalars (NaN/Inf handled), JSON-able configs, and embeddings (numpy arrays or torch tensors) into
collapse statistics. Torch is never imported here: tensors are recognised by their type's module."""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Mapping
from typing import Any

import numpy as np

from collapsewatch.contract import KEY_PATTERN, MAX_METRIC_POINTS

_KEY = re.compile(KEY_PATTERN)


def index(name: str, value: Any, upper: int) -> int:
    """An integer in [0, upper] (numpy / torch integers too); ``ValueError`` naming ``name`` otherwise."""
    try:
        number = operator.index(value) if not isinstance(value, bool) else None
    except TypeError:
        number = None
    if number is None or not 0 <= number <= upper:
        raise ValueError(f"{name}: {value!r} must be an integer between 0 and {upper}")
    return number


def layer_name(name: Any) -> str:
    """A layer name of a ``{layer: matrix}`` mapping; ``ValueError`` for one the server would refuse."""
    if not isinstance(name, str) or not _KEY.match(name):
        raise ValueError(f"embeddings: layer name {name!r} must be a string matching {KEY_PATTERN}")
    return name


def to_float(key: str, raw: Any) -> float:
    try:
        return float(raw.item() if hasattr(raw, "item") else raw)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"metric {key!r}: {raw!r} is not a number") from exc


def scalar_points(data: Mapping[str, Any], step: int) -> tuple[dict[tuple[str, int], float], str | None]:
    """``{(key, step): value}`` of the finite values in ``data``, and the first key whose value was
    NaN/±Inf (dropped), if any. ``ValueError`` for a bad key or a value that is not a number."""
    points: dict[tuple[str, int], float] = {}
    dropped: str | None = None
    for key, raw in data.items():
        if not isinstance(key, str) or not _KEY.match(key):
            raise ValueError(f"metric key {key!r} must match {KEY_PATTERN}")
        value = to_float(key, raw)
        if math.isfinite(value):
            points[(key, step)] = value
        elif dropped is None:
            dropped = key
    return points, dropped


def metric_batches(attempt: int, points: list[tuple[tuple[str, int], float]]) -> list[dict[str, Any]]:
    """``POST /metrics`` bodies of at most 1000 points each."""
    return [
        {"attempt": attempt, "points": [{"key": k, "step": s, "value": v} for (k, s), v in chunk]}
        for chunk in (points[i : i + MAX_METRIC_POINTS] for i in range(0, len(points), MAX_METRIC_POINTS))
    ]


def finite_or_none(key: str, raw: Any) -> float | None:
    if raw is None:
        return None
    value = to_float(key, raw)
    return value if math.isfinite(value) else None


def jsonable(value: Any) -> Any:
    """Config values as JSON: NaN/Inf become None, tuples lists, unknown objects their ``str``."""
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [jsonable(v) for v in value]
    if isinstance(value, bool | int | str) or value is None:
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if hasattr(value, "item") and callable(value.item):  # numpy / torch scalars
        try:
            return jsonable(value.item())
        except (TypeError, ValueError):
            pass
    return str(value)


def is_tensor(value: Any) -> bool:
    """A torch tensor, recognised without importing torch."""
    return type(value).__module__.split(".", 1)[0] == "torch" and hasattr(value, "detach")


def embedding_matrix(embeddings: Any, what: str = "embeddings") -> Any:
    """``embeddings`` as a 2-D float64 matrix on the CPU: a detached torch tensor for tensors, a numpy
    array otherwise. ``ValueError`` (naming ``what``) for another shape."""
    if is_tensor(embeddings):
        import torch  # only ever reached with a tensor, so torch is already imported

        matrix: Any = embeddings.detach().to("cpu", torch.float64)
    else:
        matrix = np.asarray(embeddings, dtype=np.float64)
    shape = tuple(matrix.shape)
    if len(shape) != 2 or min(shape) < 1:
        raise ValueError(f"{what}: shape {shape} must be (batch, dim) with both >= 1")
    return matrix


def all_finite(matrix: Any) -> bool:
    if is_tensor(matrix):
        return bool(matrix.isfinite().all())
    return bool(np.isfinite(matrix).all())


def embedding_stats(
    embeddings: Any, *, hist_edges: Any = None, dead_threshold: float = 1e-3, what: str = "embeddings"
) -> dict[str, Any] | None:
    """The collapse statistics of ``embeddings`` (numpy array or torch tensor, ``b x d``) in float64,
    or None when they hold NaN/Inf. ``ValueError`` (naming ``what``) for another shape."""
    matrix = embedding_matrix(embeddings, what)
    if not all_finite(matrix):
        return None
    from collapsewatch.stats import collapse_stats

    stats: dict[str, Any] = collapse_stats(matrix, hist_edges=hist_edges, dead_threshold=dead_threshold)
    return stats
