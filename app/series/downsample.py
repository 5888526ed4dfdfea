"""Series downsampling: at most ``max_points`` buckets with min/max envelopes, aligned across runs.

The contract (pinned by property tests):

- A series with ``n <= max_points`` points comes back unchanged (each ``y_min == y_max == y``).
- Otherwise the x range ``[lo, hi]`` is cut into buckets of one integer width
  ``w = ceil((hi - lo + 1) / (max_points - 3))``; bucket ``i`` holds ``lo + i*w <= x < lo + (i+1)*w``.
  Every run in one query shares ``lo``, ``hi`` and ``w``, so bucket ``i`` covers the same steps in
  every run (alignment by epoch/step).
- Each non-empty bucket emits its **last** point, with the bucket's min and max as envelope.
- The series' **first** point, **last** point, global **min** and global **max** (first occurrence on
  ties) are always emitted exactly (as ``x``, ``y``), with their bucket's envelope.
- So at most ``max_points`` points come back; below ``max_points = 4`` the four required points win
  (up to 4 points may come back).

The same contract is computed either in Python (:func:`downsample`) or in SQL
(``app.series.query``: bucketing, min/max and the bucket's last point are aggregated by the database).
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

REQUIRED_POINTS = 3  # first, global min, global max; the last point is always a bucket's last point


class Point(NamedTuple):  # tuples: a query builds ~20,000 of them
    x: int
    y: float
    y_min: float
    y_max: float


class Bucket(NamedTuple):
    """Aggregates of one bucket; ``last_key`` orders points (row index, or the step when unique)."""

    bucket: int
    n: int
    y_min: float
    y_max: float
    last_key: int
    last_x: int
    last_y: float


@dataclass(frozen=True, slots=True)
class Required:
    """An exact point that must survive (first, min or max) and the bucket it falls in."""

    bucket: int
    key: int
    x: int
    y: float


def bucket_count(max_points: int) -> int:
    """How many buckets a series may use so that the required points still fit."""
    if max_points < 2:
        raise ValueError(f"max_points must be at least 2, not {max_points}")
    return max(1, max_points - REQUIRED_POINTS)


def bucket_width(lo: int, hi: int, buckets: int) -> int:
    """The integer bucket width covering ``[lo, hi]`` with at most ``buckets`` buckets."""
    if hi < lo:
        raise ValueError(f"empty range [{lo}, {hi}]")
    return max(1, math.ceil((hi - lo + 1) / buckets))


def assemble(buckets: Sequence[Bucket], required: Iterable[Required]) -> list[Point]:
    """Bucket representatives (``buckets`` in bucket order) plus the required points not among them."""
    points = [Point(b.last_x, b.last_y, b.y_min, b.y_max) for b in buckets]
    keys = [b.last_key for b in buckets]
    for r in sorted(required, key=lambda r: r.key):
        i = bisect.bisect_left(keys, r.key)
        if i < len(keys) and keys[i] == r.key:
            continue
        bucket = next(b for b in buckets if b.bucket == r.bucket)
        keys.insert(i, r.key)
        points.insert(i, Point(r.x, r.y, bucket.y_min, bucket.y_max))
    return points


def exact(xs: Sequence[int], ys: Sequence[float]) -> list[Point]:
    return [Point(int(x), float(y), float(y), float(y)) for x, y in zip(xs, ys, strict=True)]


def required_points(
    keys: Sequence[int], xs: Sequence[int], ys: Sequence[float], *, lo: int, width: int
) -> list[Required]:
    """First point, first global minimum and first global maximum of ``(keys, xs, ys)`` (key order)."""
    if not keys:
        return []
    i_min = min(range(len(ys)), key=lambda i: (ys[i], keys[i]))
    i_max = min(range(len(ys)), key=lambda i: (-ys[i], keys[i]))
    i_first = min(range(len(keys)), key=lambda i: keys[i])
    return [Required((xs[i] - lo) // width, keys[i], xs[i], ys[i]) for i in (i_first, i_min, i_max)]


def downsample(
    xs: Sequence[int],
    ys: Sequence[float],
    max_points: int,
    *,
    lo: int | None = None,
    hi: int | None = None,
) -> list[Point]:
    """Downsample one series (x non-decreasing) to the contract above; ``lo``/``hi`` align runs."""
    if len(xs) != len(ys):
        raise ValueError(f"xs and ys differ in length ({len(xs)} != {len(ys)})")
    buckets_allowed = bucket_count(max_points)
    if len(xs) <= max_points:
        return exact(xs, ys)
    lo = xs[0] if lo is None else lo
    hi = xs[-1] if hi is None else hi
    if lo > xs[0] or hi < xs[-1]:
        raise ValueError(f"[lo, hi] = [{lo}, {hi}] must cover the series' x range [{xs[0]}, {xs[-1]}]")
    width = bucket_width(lo, hi, buckets_allowed)
    aggregates: dict[int, list[float | int]] = {}
    for i, (x, y) in enumerate(zip(xs, ys, strict=True)):
        b = (x - lo) // width
        agg = aggregates.get(b)
        if agg is None:
            aggregates[b] = [1, y, y, i]
        else:
            agg[0] += 1
            agg[1] = min(agg[1], y)
            agg[2] = max(agg[2], y)
            agg[3] = i
    buckets = [  # dicts keep insertion order: bucket order, as x is sorted
        Bucket(b, int(c), float(mn), float(mx), int(i), int(xs[int(i)]), float(ys[int(i)]))
        for b, (c, mn, mx, i) in aggregates.items()
    ]
    keys = list(range(len(xs)))
    return assemble(buckets, required_points(keys, xs, ys, lo=lo, width=width))
