"""The series contract of :mod:`app.series.downsample` on numpy arrays (the packed SDK scalars of
``app.series.chunks``).

Same buckets, envelopes and required points as :func:`app.series.downsample.downsample` (the tests
compare them):
``xs`` ascending and unique (steps), ``ys`` finite.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from app.series.chunks import Arrays
from app.series.downsample import Point


def finite(arrays: Arrays) -> Arrays:
    """The points with a value (NaN stands for a NULL value)."""
    xs, ys = arrays
    keep = ~np.isnan(ys)
    return (xs, ys) if keep.all() else (xs[keep], ys[keep])


def downsample_arrays(
    xs: NDArray[np.int64], ys: NDArray[np.float64], max_points: int, *, lo: int, width: int
) -> list[Point]:
    """Bucket ``[lo + i*width, lo + (i+1)*width)``'s last point with its min/max, plus first, min and max."""
    n = len(xs)
    if n <= max_points:
        values = ys.tolist()
        return list(map(Point, xs.tolist(), values, values, values))
    bucket = (xs - lo) // width
    starts = np.flatnonzero(np.concatenate(([True], bucket[1:] != bucket[:-1])))
    ends = np.append(starts[1:], n) - 1
    mins, maxs = np.minimum.reduceat(ys, starts), np.maximum.reduceat(ys, starts)
    points = list(map(Point, xs[ends].tolist(), ys[ends].tolist(), mins.tolist(), maxs.tolist()))
    # first point, first global minimum, first global maximum (argmin/argmax return the first)
    for i in sorted({0, int(np.argmin(ys)), int(np.argmax(ys))}, reverse=True):
        j = int(np.searchsorted(ends, i))  # its bucket: the first whose last index is >= i
        if ends[j] != i:  # not already the bucket's representative: goes just before it
            points.insert(j, Point(int(xs[i]), float(ys[i]), float(mins[j]), float(maxs[j])))
    return points
