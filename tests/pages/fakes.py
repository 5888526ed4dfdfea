"""Fake but consistent collapse statistics for page tests."""

from __future__ import annotations

import math
from typing import Any

BINS = 8


def fake_stats(epoch: int, *, rho: float = 0.5, dead: int = 0, d: int = 8) -> dict[str, Any]:
    """A consistent collapse_stats dict (bounds for b = 64, d = 8)."""
    lower, upper = math.sqrt(64) / d, math.sqrt(64 / d)
    counts = [0] * BINS
    counts[min(BINS - 1, epoch % BINS)] = d - dead
    counts[0] += dead
    return {
        "mean_sv": lower + rho * (upper - lower),
        "sv_lower": lower,
        "sv_upper": upper,
        "sv_position": rho,
        "singular_values": [2.0 / (i + 1 + epoch) for i in range(d)],
        "effective_rank": d * rho + 1,
        "dim_std": [0.5] * d,
        "std_hist": {"edges": [i * 0.25 for i in range(BINS + 1)], "counts": counts},
        "dead_dims": dead,
        "cov_offdiag": 0.01,
        "l2_std": 0.3,
    }
