"""Per-epoch collapse statistics of a probe set's embeddings (DESIGN.md §3's table).

``collapse_stats`` takes a numpy array (or anything ``numpy.asarray`` takes) or a torch tensor and
computes in float64 on the CPU, without gradients; it returns plain, finite Python values that
validate against ``collapsewatch.contract.CollapseStatsIn``. Importing this module does not import
torch (the light install has none): the statistics are computed with numpy, its BLAS held to one
thread (threadpoolctl, when installed); a tensor is only read with torch (imported then, because a
tensor exists). ``backend="torch"`` computes with torch's operations instead: the same algorithm
(``collapsewatch.stats_core``), agreeing with the numpy route to ~1e-12.

Spectra come from the eigenvalues of the smaller Gram matrix, checked against a rounding bound and
recomputed with ``svdvals`` where squaring cannot resolve them (exact or near collapse); see
``collapsewatch.stats_core``. ``method="svd"`` uses ``svdvals`` throughout (the reference).

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
import sys
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np

from collapsewatch.bounds import svmax_bounds
from collapsewatch.stats_core import NUMPY, Backend, Core, compute, one_blas_thread

HIST_BINS = 64
HIST_MIN = 1e-4
HIST_MAX = 4.0
_LOG_EDGES = (HIST_MIN * (HIST_MAX / HIST_MIN) ** (i / (HIST_BINS - 1)) for i in range(HIST_BINS))
DEFAULT_HIST_EDGES: tuple[float, ...] = (0.0, *(float(f"{edge:.6g}") for edge in _LOG_EDGES))
"""65 edges, 64 bins: [0, 1e-4) for (nearly) dead dimensions, then 63 log-spaced bins up to 4 (each
~18 % wide), so unit-norm embeddings (stds ≈ 1/√d, 0.02-0.3) and unnormalised ones (stds ≈ 1) both
spread over many bins. Rounded to 6 significant digits: the same floats on every machine."""

LINEAR_HIST_EDGES: tuple[float, ...] = tuple(2.0 * i / HIST_BINS for i in range(HIST_BINS + 1))
"""The edges used before the log-spaced default (64 equal bins over [0, 2]); pass them as
``hist_edges`` to compare with runs recorded then."""

MAX_SINGULAR_VALUES = 256
"""``singular_values`` holds the top 256 when k is larger."""

MAX_HIST_EDGES = 1025
RANKME_EPS = 1e-7
MAX_ABS = 1e150
Method = Literal["auto", "svd"]
BackendName = Literal["auto", "numpy", "torch"]


def _finite_or_raise(lowest: float, highest: float, bad: Any, size: int) -> None:
    if not (math.isfinite(lowest) and math.isfinite(highest)):
        raise ValueError(
            f"E contains {int(bad())} NaN/Inf value(s) out of {size}; collapse statistics need finite "
            "embeddings (check the training loss for divergence)"
        )
    largest = max(-lowest, highest)
    if largest > MAX_ABS:
        raise ValueError(f"E has values up to {largest:.3g}; above {MAX_ABS:g} squares overflow")


def _check_shape(shape: tuple[int, ...]) -> None:
    if len(shape) != 2:
        raise ValueError(f"E must be 2-D (samples x dimensions), got shape {shape}")
    if shape[0] < 1 or shape[1] < 1:
        raise ValueError(f"E needs at least 1 sample and 1 dimension, got shape {shape}")


def _tensor_matrix(E: Any, backend: str) -> tuple[Any, Backend]:
    torch = sys.modules["torch"]
    _check_shape(tuple(E.shape))
    if E.is_complex() or E.dtype == torch.bool:
        raise ValueError(f"E must hold real numbers, got {E.dtype}")
    if backend == "torch":
        from collapsewatch.stats_torch import TORCH, as_float64

        x = as_float64(E)
        lowest, highest = (float(v) for v in torch.aminmax(x))
        _finite_or_raise(lowest, highest, lambda: (~x.isfinite()).sum(), x.numel())
        return x, TORCH
    tensor = E.detach().cpu()  # read with torch, computed with numpy: no torch operator runs here
    if tensor.dtype == torch.bfloat16:  # numpy has no bfloat16
        tensor = tensor.to(torch.float32)
    return _numpy_matrix(tensor.numpy(), "numpy")


def _numpy_matrix(E: Any, backend: str) -> tuple[Any, Backend]:
    array = np.asarray(E)
    _check_shape(tuple(array.shape))
    if array.dtype.kind in "bcmMSUV":
        raise ValueError(f"E must hold real numbers, got {array.dtype}")
    # the numpy backend computes in a scratch copy (reused between calls: no fresh pages), in F order
    # when the Grams will be d x d (their product is ~15 % faster from columns in contiguous memory)
    order: Literal["C", "F"] = "F" if array.shape[1] < array.shape[0] else "C"
    try:
        x = array.astype(np.float64) if backend == "torch" else NUMPY.copy(array, "x", order)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"E must hold real numbers, got {array.dtype} ({exc})") from exc
    _finite_or_raise(float(x.min()), float(x.max()), lambda: (~np.isfinite(x)).sum(), x.size)
    if backend == "torch":
        from collapsewatch.stats_torch import TORCH, from_numpy

        return from_numpy(x), TORCH
    return x, NUMPY


def _is_tensor(E: Any) -> bool:
    torch = sys.modules.get("torch")  # a tensor means torch is imported already: never import it here
    return torch is not None and isinstance(E, torch.Tensor)


def _check_edges(hist_edges: Any) -> np.ndarray:
    if hist_edges is None:
        return np.array(DEFAULT_HIST_EDGES)
    if _is_tensor(hist_edges):
        hist_edges = hist_edges.detach().cpu().double().numpy()
    edges = np.asarray(hist_edges, dtype=np.float64)
    if edges.ndim != 1 or not 2 <= edges.size <= MAX_HIST_EDGES:
        raise ValueError(
            f"hist_edges must be a flat list of 2 to {MAX_HIST_EDGES} numbers, got shape {edges.shape}"
        )
    if not np.isfinite(edges).all():
        raise ValueError("hist_edges must be finite numbers")
    if not (edges[1:] > edges[:-1]).all():
        raise ValueError("hist_edges must be strictly increasing")
    return edges


def std_histogram(std: Any, edges: Any) -> list[int]:
    """Counts of ``std`` in the bins [e_i, e_{i+1}); values past the last edge go in the last bin and
    values below the first edge in the first, so the counts always sum to d."""
    edges = np.asarray(edges, dtype=np.float64)
    bins = edges.size - 1
    index = np.clip(np.searchsorted(edges, np.asarray(std, dtype=np.float64), side="right") - 1, 0, bins - 1)
    counts: list[int] = np.bincount(index, minlength=bins).tolist()
    return counts


def rankme(singular_values: Any) -> float:
    """RankMe (Garrido et al. 2023): exp(-Σ p log p), p_i = s_i/Σs + 1e-7; 0 for an all-zero matrix."""
    s = np.asarray(singular_values, dtype=np.float64)
    total = float(s.sum())
    if total <= 0.0:
        return 0.0
    p = s / total + RANKME_EPS
    return float(np.exp(-(p * np.log(p)).sum()))


def collapse_core(E: Any, *, method: Method = "auto", backend: BackendName = "auto") -> tuple[Core, str]:
    """The float64 spectra, stds and covariance term of ``E`` and the backend that computed them
    ("numpy" or "torch"); ``collapse_stats`` builds its dict from these."""
    if method not in ("auto", "svd"):
        raise ValueError(f"method must be 'auto' or 'svd', got {method!r}")
    if backend not in ("auto", "numpy", "torch"):
        raise ValueError(f"backend must be 'auto', 'numpy' or 'torch', got {backend!r}")
    x, be = _tensor_matrix(E, backend) if _is_tensor(E) else _numpy_matrix(E, backend)
    if be is NUMPY:
        with one_blas_thread():
            return compute(x, be, method), be.name
    return compute(x, be, method), be.name


def collapse_stats(
    E: Any,
    *,
    hist_edges: Sequence[float] | Any | None = None,
    dead_threshold: float = 1e-3,
    method: Method = "auto",
    backend: BackendName = "auto",
) -> dict[str, Any]:
    """Collapse statistics of the embeddings ``E`` (b x d; a numpy array, anything ``numpy.asarray``
    takes, or a torch tensor on any device), computed in float64 on the CPU.

    Keys (DESIGN.md §3): ``mean_sv``, ``sv_lower``, ``sv_upper``, ``sv_position`` of the L2-normalised
    rows; ``singular_values``: the normalised rows' spectrum, descending, at most the top 256 (its mean
    is ``mean_sv`` when k <= 256); ``effective_rank`` (RankMe on the raw rows); ``dim_std`` (unbiased,
    raw); ``std_hist`` (``{"edges", "counts"}`` on ``hist_edges``, default ``DEFAULT_HIST_EDGES``);
    ``dead_dims`` (std < ``dead_threshold``); ``cov_offdiag`` (VICReg's c(Z)); ``l2_std`` (mean
    per-dimension std of the normalised rows). ``method="svd"`` computes the spectra with ``svdvals``
    instead of the checked Gram route; ``backend="torch"`` computes with torch's operations instead
    of numpy's (the default; tensors are only read with torch). See the module docstring for
    degenerate inputs.
    """
    if not (
        isinstance(dead_threshold, int | float) and math.isfinite(dead_threshold) and dead_threshold >= 0
    ):
        raise ValueError(f"dead_threshold must be a finite number >= 0, got {dead_threshold!r}")
    edges = _check_edges(hist_edges)
    core, _ = collapse_core(E, method=method, backend=backend)
    b, d = core.shape
    lower, upper = svmax_bounds(b, d)
    mean_sv = float(core.sv_normed.mean())
    position = 1.0 if upper == lower else min(max((mean_sv - lower) / (upper - lower), 0.0), 1.0)
    return {
        "mean_sv": mean_sv,
        "sv_lower": lower,
        "sv_upper": upper,
        "sv_position": position,
        "singular_values": core.sv_normed[:MAX_SINGULAR_VALUES].tolist(),
        "effective_rank": rankme(core.sv_raw),
        "dim_std": core.dim_std.tolist(),
        "std_hist": {"edges": edges.tolist(), "counts": std_histogram(core.dim_std, edges)},
        "dead_dims": int((core.dim_std < dead_threshold).sum()),
        "cov_offdiag": max(core.cov_offdiag, 0.0),
        "l2_std": core.l2_std,
    }
