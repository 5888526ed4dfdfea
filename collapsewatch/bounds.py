"""SVMax's closed-form bounds and the row-normalisation epsilon, shared by ``collapsewatch.regularizers``
(torch, training time) and ``collapsewatch.stats`` (numpy or torch, reporting). No torch here."""

from __future__ import annotations

import math

NORMALIZE_EPS = 1e-12
"""Rows are divided by max(‖row‖, NORMALIZE_EPS), as ``torch.nn.functional.normalize`` does."""


def svmax_bounds(b: int, d: int) -> tuple[float, float]:
    """Bounds (L, U) of the mean singular value of a b x d matrix with unit-norm rows.

    ``L = √b / k`` (attained iff rank 1) and ``U = √(b / k)`` (attained iff all k singular values are
    equal), with k = min(b, d). For b >= d these are the paper's √b/d and √(b/d); for b < d the
    paper's formulas are wrong (√b/d is below what any unit-row matrix reaches).
    """
    for name, value in (("b", b), ("d", d)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    k = min(b, d)
    return math.sqrt(b) / k, math.sqrt(b / k)
