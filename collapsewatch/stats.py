"""Per-epoch collapse statistics of a probe set's embeddings (DESIGN.md §3's table).

``collapse_stats`` computes in float64 with ``torch.linalg.svdvals`` (no fast paths, no gradients)
and returns plain, finite Python values that validate against ``collapsewatch.contract.CollapseStatsIn``.

Degenerate inputs are defined, never NaN:

* k = min(b, d) = 1: the one singular value is both bounds (L = U), so ``sv_position`` is 1.0 (no
  room to collapse; this also keeps the dashboard's low-position alert quiet).
* b = 1: a single sample has no spread, so ``dim_std``, ``l2_std`` and ``cov_offdiag`` are 0
  (divisor max(b - 1, 1)) and every dimension counts as dead.
* all-zero rows cannot be normalised and stay zero; they pull ``mean_sv`` below L, and
  ``sv_position`` is clipped to [0, 1] (rounding can also overshoot U by ~1e-16). An all-zero
  matrix gives mean_sv 0, position 0 and ``effective_rank`` 0 (RankMe is undefined there).
* NaN or Inf anywhere raises ``ValueError``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from collapsewatch.regularizers import NORMALIZE_EPS, svmax_bounds, vicreg_covariance

HIST_BINS = 64
HIST_MAX = 2.0
DEFAULT_HIST_EDGES: tuple[float, ...] = tuple(HIST_MAX * i / HIST_BINS for i in range(HIST_BINS + 1))
"""64 equal bins over [0, 2] for the per-dimension std (gamma = 1 sits in the middle)."""

MAX_SINGULAR_VALUES = 256
"""``singular_values`` holds the top 256 when k is larger."""

_DEFAULT_EDGES = torch.tensor(DEFAULT_HIST_EDGES, dtype=torch.float64)
MAX_HIST_EDGES = 1025
RANKME_EPS = 1e-7
MAX_ABS = 1e150


def _as_matrix(E: Any) -> Tensor:
    tensor = E if isinstance(E, Tensor) else torch.as_tensor(E)
    if tensor.dim() != 2:
        raise ValueError(f"E must be 2-D (samples x dimensions), got shape {tuple(tensor.shape)}")
    if tensor.shape[0] < 1 or tensor.shape[1] < 1:
        raise ValueError(f"E needs at least 1 sample and 1 dimension, got shape {tuple(tensor.shape)}")
    if tensor.is_complex() or tensor.dtype == torch.bool:
        raise ValueError(f"E must hold real numbers, got {tensor.dtype}")
    x = tensor.detach().to("cpu", torch.float64)
    largest = float(x.abs().max())  # NaN if any entry is NaN, Inf if any is infinite
    if not math.isfinite(largest):
        bad = int((~torch.isfinite(x)).sum())
        raise ValueError(
            f"E contains {bad} NaN/Inf value(s) out of {x.numel()}; collapse statistics need finite "
            "embeddings (check the training loss for divergence)"
        )
    if largest > MAX_ABS:
        raise ValueError(f"E has values up to {largest:.3g}; above {MAX_ABS:g} squares overflow")
    return x


def _check_edges(hist_edges: Sequence[float] | Tensor | None) -> Tensor:
    if hist_edges is None:
        return _DEFAULT_EDGES
    edges = torch.as_tensor(hist_edges, dtype=torch.float64).detach().cpu()
    if edges.dim() != 1 or not 2 <= edges.numel() <= MAX_HIST_EDGES:
        raise ValueError(
            f"hist_edges must be a flat list of 2 to {MAX_HIST_EDGES} numbers, got shape {tuple(edges.shape)}"
        )
    if not bool(torch.isfinite(edges).all()):
        raise ValueError("hist_edges must be finite numbers")
    if not bool((edges[1:] > edges[:-1]).all()):
        raise ValueError("hist_edges must be strictly increasing")
    return edges


def std_histogram(std: Tensor, edges: Tensor) -> list[int]:
    """Counts of ``std`` in the bins [e_i, e_{i+1}); values past the last edge go in the last bin and
    values below the first edge in the first, so the counts always sum to d."""
    bins = edges.numel() - 1
    index = (torch.searchsorted(edges, std, right=True) - 1).clamp(0, bins - 1)
    counts: list[int] = torch.bincount(index, minlength=bins).tolist()
    return counts


def _unbiased_std(x: Tensor) -> Tensor:
    centred = x - x.mean(dim=0)
    return (centred.pow(2).sum(dim=0) / max(x.shape[0] - 1, 1)).sqrt()


def rankme(singular_values: Tensor) -> float:
    """RankMe (Garrido et al. 2023): exp(-Σ p log p), p_i = s_i/Σs + 1e-7; 0 for an all-zero matrix."""
    total = singular_values.sum()
    if float(total) <= 0.0:
        return 0.0
    p = singular_values / total + RANKME_EPS
    return float(torch.exp(-(p * p.log()).sum()))


def collapse_stats(
    E: Any,
    *,
    hist_edges: Sequence[float] | Tensor | None = None,
    dead_threshold: float = 1e-3,
) -> dict[str, Any]:
    """Collapse statistics of the embeddings ``E`` (b x d; a torch tensor or anything
    ``torch.as_tensor`` takes), computed in float64 on the CPU.

    Keys (DESIGN.md §3): ``mean_sv``, ``sv_lower``, ``sv_upper``, ``sv_position`` of the L2-normalised
    rows; ``singular_values``: the normalised rows' spectrum, descending, at most the top 256 (its mean
    is ``mean_sv`` when k <= 256); ``effective_rank`` (RankMe on the raw rows); ``dim_std`` (unbiased,
    raw); ``std_hist`` (``{"edges", "counts"}`` on ``hist_edges``, default ``DEFAULT_HIST_EDGES``);
    ``dead_dims`` (std < ``dead_threshold``); ``cov_offdiag`` (VICReg's c(Z)); ``l2_std`` (mean
    per-dimension std of the normalised rows). See the module docstring for degenerate inputs.
    """
    if not (
        isinstance(dead_threshold, int | float) and math.isfinite(dead_threshold) and dead_threshold >= 0
    ):
        raise ValueError(f"dead_threshold must be a finite number >= 0, got {dead_threshold!r}")
    x = _as_matrix(E)
    edges = _check_edges(hist_edges)
    b, d = x.shape
    lower, upper = svmax_bounds(b, d)
    with torch.no_grad():
        normed = F.normalize(x, p=2.0, dim=1, eps=NORMALIZE_EPS)
        sv_normed = torch.linalg.svdvals(normed)
        mean_sv = float(sv_normed.mean())
        position = 1.0 if upper == lower else min(max((mean_sv - lower) / (upper - lower), 0.0), 1.0)
        dim_std = _unbiased_std(x)
        cov_offdiag = float(vicreg_covariance(x)) if b >= 2 else 0.0
        stats: dict[str, Any] = {
            "mean_sv": mean_sv,
            "sv_lower": lower,
            "sv_upper": upper,
            "sv_position": position,
            "singular_values": sv_normed[:MAX_SINGULAR_VALUES].tolist(),
            "effective_rank": rankme(torch.linalg.svdvals(x)),
            "dim_std": dim_std.tolist(),
            "std_hist": {"edges": edges.tolist(), "counts": std_histogram(dim_std, edges)},
            "dead_dims": int((dim_std < dead_threshold).sum()),
            "cov_offdiag": max(cov_offdiag, 0.0),
            "l2_std": float(_unbiased_std(normed).mean()),
        }
    return stats
