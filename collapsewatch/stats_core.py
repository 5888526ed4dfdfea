"""The heavy part of ``collapse_stats``: both spectra, per-dimension stds and VICReg's c(Z), in float64.

One algorithm, two array backends: numpy (here; the default, tensors included, run with its BLAS
held to one thread by :func:`one_blas_thread`) and torch (``stats_torch``, ``backend="torch"``).
The backends supply the few operations whose names differ; the rest uses operators both share.
Measured on the 2-core AMD EPYC machine (one thread, (512, d) probes): numpy's OpenBLAS takes 2 ms
at d = 128 and 28 ms at d = 512 where torch's MKL takes 2.3 and 56 (``python -m bench.stats``).

Spectra through the smaller Gram matrix (DESIGN.md §3's "float64 Gram-eigenvalue route"):

* Columns that are zero on every row (dead ReLU units) are dropped first: they add exact zero
  singular values and nothing else. d' = the remaining columns. On the row route all-zero rows are
  kept out of the eigenvalue problems for the same reason (they still count in the means and stds):
  squared, an exact zero comes back as rounding noise of ~1e-16·λ_max, whose root is ~1e-8·s_max.
* d' < b: ``Xcᵀ Xc`` (centred, d' x d') gives the stds' check, c(Z) and, plus ``b·μμᵀ``, the raw
  Gram ``XᵀX`` without cancellation; the normalised rows need their own ``NᵀN``.
* b <= d': one row Gram ``X Xᵀ`` (b x b); the normalised rows' Gram is it scaled by 1/(‖x_i‖·‖x_j‖),
  and ``‖C‖_F`` comes from the double-centred row Gram (``‖XcᵀXc‖_F = ‖Xc Xcᵀ‖_F``).
* Singular values are √max(λ, 0). Squaring loses what lies below √eps·s_max, so each spectrum is
  checked: with δ (:data:`NOISE_FACTOR`) a bound on the eigenvalues' rounding error (n = the summed
  side, m = the Gram's side), each value's error is bounded, and when the sum of those bounds
  exceeds what the reported numbers can take (:data:`SV_TOL` of k·(s_μ - L) for the normalised
  rows, so s_μ and rho are both held; :data:`RAW_TOL` of Σ s_i for RankMe's raw rows) that spectrum is
  computed again with ``svdvals`` on the matrix itself (exact or near collapse, many tiny singular
  values). So the Gram route agrees with ``svdvals`` to 1e-7 relative on s_μ and rho, inside
  DESIGN.md's 1e-6, exact collapse included (it always falls back); in practice (the bound is
  pessimistic) to ~1e-13. Trained embeddings fall back only when rank-deficient beyond their dead
  columns or near it: the digits MLP at d = 512 has s_min/s_max ~ 5e-7 after a few epochs, a bound
  of ~1.5e-8·Σ s_i and a true error of ~1e-14 (the former 1e-8 of Σ s_i sent 1 epoch in 5 to
  ``svdvals``, 50 ms there).

What it costs: two symmetric eigenvalue problems of size k' = min(b, d') (LAPACK's ``dsytrd``
tridiagonal reduction, O(k'³) in level-2 BLAS, then ``dsterf``: 8-11 ms each at k' = 512, 0.5 ms at
k' = 128 on that machine; the same in float32, with ``scipy``'s drivers or MKL's, and a two-stage
band reduction through scipy spends 5-9 ms in ``dsbevd`` alone), one Gram product (``syrk``: ~3.6 ms
at 512 x 512, 0.3 ms for 128 x 128 from 512 rows; two of them when d' < b) and a few passes over
b x d and k' x k' arrays: the float64 floor is ~25 ms at b = d = 512 and ~1.6 ms at (512, 128).
The numpy backend keeps its large temporaries in per-thread scratch arrays (:func:`scratch`) reused
from call to call: fresh multi-MB arrays are fresh pages from the kernel, and at b = d = 512 their
page faults cost ~5 ms of system time per call in a process that does little else (15 % of the
statistics; inside the engine's epochs, where the heap stays large, the difference is in the noise).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Literal, NamedTuple, Protocol

import numpy as np

from collapsewatch.bounds import NORMALIZE_EPS

SV_TOL = 1e-7
"""Largest bounded error of the normalised rows' Σ s_i on the Gram route, relative to Σ s_i - √b
= k·(s_μ - L), before ``svdvals`` takes over: s_μ and the position rho = (s_μ - L)/(U - L) then stay
within 1e-7 relative, ten times inside DESIGN.md's 1e-6 (k = 1: relative to Σ s_i, rho is 1)."""
RAW_TOL = 3e-8
"""The same for the raw rows' spectrum, relative to Σ s_i. It only feeds RankMe, whose entropy moves
by at most 16.1·Σ|Δs_i|/Σ s_i (p_i >= 1e-7 keeps |log p_i - c| <= 8.06 for c = -8.06, the changes
Δp_i sum to 0 and Σ|Δp_i| <= 2·Σ|Δs_i|/Σ s_i): RankMe stays within 5e-7 relative."""
NOISE_FACTOR = 4.0
"""δ = NOISE_FACTOR·√(n + m)·eps·λ_max bounds the Gram eigenvalues' rounding error: measured on
rank-1, rank-3, rank-10 (offset), half-rank and ReLU-of-low-rank matrices from 7 x 3 to 2048 x 64,
512 x 512 and 300 x 700, raw and row-normalised, numpy/OpenBLAS and torch/MKL, the spurious
eigenvalues stayed below 0.55·√(n + m)·eps·λ_max, so the factor 4 leaves a margin of 7."""
EPS64 = float(np.finfo(np.float64).eps)
SCRATCH_MAX_BYTES = 8 * 2**20
"""Scratch arrays up to this size (b·d or b² float64 values: 512 x 2048, 1024 x 1024) are kept per
thread between calls; larger ones are allocated per call. At most four are kept (32 MiB a thread)."""


class Backend(Protocol):
    """Operations whose spelling differs between numpy and torch (arrays are float64, 2-D or 1-D)."""

    name: str

    def eigvalsh(self, gram: Any) -> np.ndarray: ...  # ascending, as numpy float64

    def svdvals(self, matrix: Any) -> np.ndarray: ...  # descending, as numpy float64

    def numpy(self, array: Any) -> np.ndarray: ...

    def offdiag_sq_sum(self, square: Any) -> float: ...  # Σ_{i≠j} a_ij² (no cancellation; a temporary)

    def sq_sum(self, matrix: Any, axis: int) -> Any: ...  # Σ a² along ``axis``, no b x d temporary

    def columns(self, matrix: Any, keep: np.ndarray) -> Any: ...  # a copy of the kept columns

    def rows_divided(self, matrix: Any, scale: Any) -> Any: ...  # matrix / scale[:, None], a new array

    def row_gram(self, matrix: Any) -> Any: ...  # matrix @ matrix.T, a new array

    def copy(self, array: Any, name: str, order: Literal["C", "F"] = "C") -> Any: ...  # (numpy: scratch)


_BLAS_LOCK = threading.Lock()
_blas_pools: Any = None  # threadpoolctl's view of numpy's BLAS, found on first use (False: none)


@contextmanager
def one_blas_thread() -> Iterator[None]:
    """numpy's BLAS/LAPACK on one thread for the duration (threadpoolctl, when installed): these
    problems are small, and a second BLAS thread pool beside torch's only burns CPU time spinning."""
    global _blas_pools
    with _BLAS_LOCK:
        if _blas_pools is None:
            try:
                from threadpoolctl import ThreadpoolController

                _blas_pools = ThreadpoolController().select(user_api="blas")
            except Exception:  # not installed, or an unknown BLAS: leave numpy's threads alone
                _blas_pools = False
        if not _blas_pools:
            yield
            return
        with _blas_pools.limit(limits=1):
            yield


class _Scratch(threading.local):
    def __init__(self) -> None:
        self.arrays: dict[str, np.ndarray] = {}


_SCRATCH = _Scratch()


def scratch(name: str, shape: tuple[int, ...], order: Literal["C", "F"] = "C") -> np.ndarray:
    """An uninitialised float64 array of ``shape`` and ``order``, the same one each time this thread
    asks for ``name`` with them (when it is at most SCRATCH_MAX_BYTES). Its contents are the caller's
    until the thread asks for ``name`` again: ``compute`` takes its temporaries from here and never
    returns them (everything in a ``Core`` is a fresh array)."""
    if 8 * math.prod(shape) > SCRATCH_MAX_BYTES:
        return np.empty(shape, order=order)
    array = _SCRATCH.arrays.get(name)
    if array is None or array.shape != shape or not array.flags[order]:
        array = _SCRATCH.arrays[name] = np.empty(shape, order=order)
    return array


def _order(array: np.ndarray) -> Literal["C", "F"]:
    return "F" if array.flags.f_contiguous and not array.flags.c_contiguous else "C"


class NumpyBackend:
    name = "numpy"

    def eigvalsh(self, gram: Any) -> np.ndarray:
        return np.linalg.eigvalsh(gram)

    def svdvals(self, matrix: Any) -> np.ndarray:
        return np.linalg.svd(matrix, compute_uv=False)

    def numpy(self, array: Any) -> np.ndarray:
        return np.asarray(array, dtype=np.float64)

    def offdiag_sq_sum(self, square: Any) -> float:
        sq = square * square
        np.fill_diagonal(sq, 0.0)
        return float(sq.sum())

    def sq_sum(self, matrix: Any, axis: int) -> Any:
        return np.einsum("ij,ij->j" if axis == 0 else "ij,ij->i", matrix, matrix)

    def columns(self, matrix: Any, keep: np.ndarray) -> Any:  # in the same order (C: compress is faster)
        return matrix[:, keep] if _order(matrix) == "F" else np.compress(keep, matrix, axis=1)

    def rows_divided(self, matrix: Any, scale: Any) -> Any:
        out = scratch("normed", matrix.shape, _order(matrix))
        return np.divide(matrix, scale[:, None], out=out)

    def row_gram(self, matrix: Any) -> Any:
        b = matrix.shape[0]
        return np.matmul(matrix, matrix.T, out=scratch("row_gram", (b, b)))

    def copy(self, array: Any, name: str, order: Literal["C", "F"] = "C") -> Any:
        out = scratch(name, array.shape, order)
        out[...] = array
        return out


class Core(NamedTuple):
    """What the backends compute; every array is numpy float64."""

    sv_normed: np.ndarray  # k values, descending: the L2-normalised rows' spectrum
    sv_raw: np.ndarray  # k values, descending: the raw rows' spectrum (RankMe)
    dim_std: np.ndarray  # d values: unbiased per-dimension std of the raw rows
    cov_offdiag: float  # VICReg's c(Z) (before clipping at 0)
    l2_std: float  # mean per-dimension std of the normalised rows
    routes: tuple[str, str]  # ("gram" | "svd" | "zero") for (sv_normed, sv_raw)
    shape: tuple[int, int]  # (b, d) of the input


def gram_singular_values(lam: np.ndarray, summed: int) -> tuple[np.ndarray, float]:
    """√max(λ, 0) descending, and a bound on Σ|s_i - ŝ_i| (see the module docstring)."""
    lam = np.asarray(lam, dtype=np.float64)
    values = np.sqrt(np.clip(lam[::-1], 0.0, None))
    top = float(np.abs(lam).max()) if lam.size else 0.0
    if top == 0.0:
        return values, 0.0
    delta = NOISE_FACTOR * np.sqrt(summed + lam.size) * EPS64 * top
    # true λ in [λ̂ - δ, λ̂ + δ]: |s - ŝ| <= ŝ - √(ŝ² - δ) when ŝ² >= δ, else <= √(ŝ² + δ)
    squared = values * values
    resolved = squared >= delta
    low = np.where(resolved, values + np.sqrt(np.where(resolved, squared - delta, 0.0)), 1.0)
    err = np.where(resolved, delta / low, np.sqrt(squared + delta))
    return values, float(err.sum())


def _spectrum(
    be: Backend, gram: Any, matrix: Callable[[], Any], summed: int, tol: float, floor: float = 0.0
) -> tuple[np.ndarray, str]:
    """Singular values from ``gram``'s eigenvalues when their bounded error is at most
    ``tol·(Σ s_i - floor)``, else ``svdvals`` of ``matrix()`` (rebuilt only then)."""
    values, err = gram_singular_values(be.eigvalsh(gram), summed)
    if err <= tol * (float(values.sum()) - floor):
        return values, "gram"
    return be.svdvals(matrix()), "svd"


def _block(be: Backend, square: Any, keep: np.ndarray) -> Any:
    """The rows and columns ``keep`` of a symmetric ``square`` (itself when every one is kept)."""
    if keep.all():
        return square
    return be.columns(be.columns(square, keep).T, keep)


def _padded(values: np.ndarray, k: int) -> np.ndarray:
    out = np.zeros(k)
    top = np.sort(values)[::-1][:k]
    out[: top.size] = top
    return out


def compute(x: Any, be: Backend, method: str = "auto") -> Core:
    """The statistics' heavy part for a finite float64 b x d array ``x`` of backend ``be``, which it
    owns: ``x`` is centred in place (one b x d temporary besides it: the normalised rows).

    ``method``: "auto" = the Gram route with its ``svdvals`` fallback; "svd" = ``svdvals`` always."""
    b, d = x.shape
    k = min(b, d)
    denom = max(b - 1, 1)
    floor = float(np.sqrt(b)) if k > 1 else 0.0  # k·L: the normalised rows' Σ s_i at rank 1
    row_sq = be.sq_sum(x, 1)
    scale = (row_sq**0.5).clip(min=NORMALIZE_EPS)
    live = be.numpy(be.sq_sum(x, 0)) > 0  # all-zero columns (dead ReLU units): zero singular values
    dz = int(live.sum())
    var, l2_var = np.zeros(d), np.zeros(d)
    if dz == 0:
        return Core(np.zeros(k), np.zeros(k), var, 0.0, 0.0, ("zero", "zero"), (b, d))
    if dz < d:
        x = be.columns(x, live)
    normed = be.rows_divided(x, scale)
    mu, m = x.mean(axis=0), normed.mean(axis=0)
    cov = 0.0
    if method == "svd":  # the reference: svdvals, and the d' x d' covariance
        sv_n, sv_r, routes = be.svdvals(normed), be.svdvals(x), ("svd", "svd")
        x -= mu
        normed -= m
        var[live], l2_var[live] = be.numpy(be.sq_sum(x, 0)) / denom, be.numpy(be.sq_sum(normed, 0)) / denom
        cov = be.offdiag_sq_sum(x.T @ x) / denom**2 / d
    elif dz < b:  # column route: d' x d' Grams of the centred rows, plus b·μμᵀ for the raw ones
        x -= mu
        normed -= m
        gram, gram_n = x.T @ x, normed.T @ normed
        var[live] = be.numpy(gram.diagonal()) / denom
        l2_var[live] = be.numpy(gram_n.diagonal()) / denom
        cov = be.offdiag_sq_sum(gram) / denom**2 / d
        gram += float(b) * (mu[:, None] * mu[None, :])  # now XᵀX, without cancellation
        gram_n += float(b) * (m[:, None] * m[None, :])
        sv_n, route_n = _spectrum(be, gram_n, lambda: normed + m, b, SV_TOL, floor)
        sv_r, route_r = _spectrum(be, gram, lambda: x + mu, b, RAW_TOL)
        routes = (route_n, route_r)
    else:  # row route: one b x b Gram; rows scaled for the normalised one, double-centred for C
        raw = be.row_gram(x)
        x -= mu
        normed -= m
        var[live], l2_var[live] = be.numpy(be.sq_sum(x, 0)) / denom, be.numpy(be.sq_sum(normed, 0)) / denom
        if b >= 2:  # ‖Xc Xcᵀ‖_F from the double-centred row Gram (one b x b temporary, reused below)
            row_mean = raw.mean(axis=1)
            work = be.copy(raw, "work")
            work -= row_mean[:, None]
            work -= row_mean[None, :]
            work += row_mean.mean()
            cov = (float(be.numpy(be.sq_sum(work, 0)).sum()) / denom**2 - float(var @ var)) / d
            work[...] = raw
        else:
            work = be.copy(raw, "work")
        inv = 1.0 / scale
        work *= inv[:, None]
        work *= inv[None, :]
        rows = be.numpy(row_sq) > 0  # all-zero rows: exact zero singular values, kept out of the solves
        sv_n, route_n = _spectrum(be, _block(be, work, rows), lambda: normed + m, dz, SV_TOL, floor)
        sv_r, route_r = _spectrum(be, _block(be, raw, rows), lambda: x + mu, dz, RAW_TOL)
        routes = (route_n, route_r)
    l2_std = float(np.sqrt(l2_var).mean())
    return Core(_padded(sv_n, k), _padded(sv_r, k), np.sqrt(var), float(cov), l2_std, routes, (b, d))


NUMPY = NumpyBackend()
