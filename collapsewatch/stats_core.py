"""The heavy part of ``collapse_stats``: both spectra, per-dimension stds and VICReg's c(Z), in float64.

One algorithm, two array backends: numpy (here; the light install) and torch (``stats_torch``, used
for tensor inputs so that training processes stay on torch's own thread pool). The backends supply
the few operations whose names differ; everything else is written with operators both share.

Spectra through the smaller Gram matrix (DESIGN.md §3's "float64 Gram-eigenvalue route"):

* Columns that are zero on every row (dead ReLU units) are dropped first: they add exact zero
  singular values and nothing else. d' = the remaining columns.
* d' < b: ``Xcᵀ Xc`` (centred, d' x d') gives the stds' check, c(Z) and, plus ``b·μμᵀ``, the raw
  Gram ``XᵀX`` without cancellation; the normalised rows need their own ``NᵀN``.
* b <= d': one row Gram ``X Xᵀ`` (b x b); the normalised rows' Gram is it scaled by 1/(‖x_i‖·‖x_j‖),
  and ``‖C‖_F`` comes from the double-centred row Gram (``‖XcᵀXc‖_F = ‖Xc Xcᵀ‖_F``).
* Singular values are √max(λ, 0). Squaring loses what lies below √eps·s_max, so each spectrum is
  checked: with δ (:data:`NOISE_FACTOR`) a bound on the eigenvalues' rounding error (n = the summed
  side, m = the Gram's side), each value's error is bounded, and when the sum of those bounds
  exceeds :data:`GRAM_TOL` of Σ s_i (exact or near collapse, many tiny singular values) that
  spectrum is computed again with ``svdvals`` on the matrix itself. So the Gram route agrees with
  ``svdvals`` to 1e-8 relative on s_μ (hence on the position), far inside DESIGN.md's 1e-6, including exact
  collapse, which always falls back; in practice (the bound is pessimistic) to ~1e-13.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Protocol

import numpy as np

from collapsewatch.bounds import NORMALIZE_EPS

GRAM_TOL = 1e-8
"""Largest bounded error of a Gram-route spectrum, relative to its sum, before ``svdvals`` takes over."""
NOISE_FACTOR = 4.0
"""δ = NOISE_FACTOR·√(n + m)·eps·λ_max bounds the Gram eigenvalues' rounding error: measured on
rank-deficient matrices up to 2048 x 512 (numpy/OpenBLAS and torch/MKL), the spurious eigenvalues
stay below 0.55·√(n + m)·eps·λ_max, so the factor 4 leaves a margin of 7."""
EPS64 = float(np.finfo(np.float64).eps)


class Backend(Protocol):
    """Operations whose spelling differs between numpy and torch (arrays are float64, 2-D or 1-D)."""

    name: str

    def eigvalsh(self, gram: Any) -> np.ndarray: ...  # ascending, as numpy float64

    def svdvals(self, matrix: Any) -> np.ndarray: ...  # descending, as numpy float64

    def numpy(self, array: Any) -> np.ndarray: ...

    def offdiag_sq_sum(self, square: Any) -> float: ...  # Σ_{i≠j} a_ij², without cancellation


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


class Core(NamedTuple):
    """What the backends compute; every array is numpy float64."""

    sv_normed: np.ndarray  # k values, descending: the L2-normalised rows' spectrum
    sv_raw: np.ndarray  # k values, descending: the raw rows' spectrum (RankMe)
    dim_std: np.ndarray  # d values: unbiased per-dimension std of the raw rows
    cov_offdiag: float  # VICReg's c(Z) (before clipping at 0)
    l2_std: float  # mean per-dimension std of the normalised rows
    routes: tuple[str, str]  # ("gram" | "svd" | "zero") for (sv_normed, sv_raw)
    shape: tuple[int, int]  # (b, d) of the input


def gram_singular_values(lam: np.ndarray, summed: int) -> np.ndarray | None:
    """√max(λ, 0) descending, or None when the bounded error exceeds GRAM_TOL (see module docstring)."""
    lam = np.asarray(lam, dtype=np.float64)
    values = np.sqrt(np.clip(lam[::-1], 0.0, None))
    top = float(np.abs(lam).max()) if lam.size else 0.0
    if top == 0.0:
        return values
    delta = NOISE_FACTOR * np.sqrt(summed + lam.size) * EPS64 * top
    # true λ in [λ̂ - δ, λ̂ + δ]: |s - ŝ| <= ŝ - √(ŝ² - δ) when ŝ² >= δ, else <= √(ŝ² + δ)
    squared = values * values
    resolved = squared >= delta
    low = np.where(resolved, values + np.sqrt(np.where(resolved, squared - delta, 0.0)), 1.0)
    err = np.where(resolved, delta / low, np.sqrt(squared + delta))
    return values if float(err.sum()) <= GRAM_TOL * float(values.sum()) else None


def _spectrum(be: Backend, gram: Any, matrix: Any, summed: int) -> tuple[np.ndarray, str]:
    values = gram_singular_values(be.eigvalsh(gram), summed)
    if values is not None:
        return values, "gram"
    return be.svdvals(matrix), "svd"


def _padded(values: np.ndarray, k: int) -> np.ndarray:
    out = np.zeros(k)
    top = np.sort(values)[::-1][:k]
    out[: top.size] = top
    return out


def compute(x: Any, be: Backend, method: str = "auto") -> Core:
    """The statistics' heavy part for a finite float64 b x d array ``x`` of backend ``be``.

    ``method``: "auto" = the Gram route with its ``svdvals`` fallback; "svd" = ``svdvals`` always."""
    b, d = x.shape
    k = min(b, d)
    denom = max(b - 1, 1)
    sq = x * x
    scale = (sq.sum(axis=1) ** 0.5).clip(min=NORMALIZE_EPS)
    live = sq.sum(axis=0) > 0  # all-zero columns (dead ReLU units) add zero singular values only
    live_np = be.numpy(live).astype(bool)
    dz = int(live_np.sum())
    if dz < d:
        x = x[:, live]
    mu = x.mean(axis=0)
    xc = x - mu
    normed = x / scale[:, None]
    m = normed.mean(axis=0)
    nc = normed - m
    var = np.zeros(d)
    l2_var = np.zeros(d)
    cov = 0.0
    if dz == 0:
        zeros = np.zeros(k)
        return Core(zeros, zeros.copy(), var, 0.0, 0.0, ("zero", "zero"), (b, d))
    if method == "auto" and dz < b:  # column route: d' x d' Grams of the centred raw and normalised rows
        centred, centred_n = xc.T @ xc, nc.T @ nc
        var[live_np] = be.numpy(centred.diagonal()) / denom
        l2_var[live_np] = be.numpy(centred_n.diagonal()) / denom
        cov = be.offdiag_sq_sum(centred / denom) / d
        sv_n, route_n = _spectrum(be, centred_n + float(b) * (m[:, None] * m[None, :]), normed, b)
        sv_r, route_r = _spectrum(be, centred + float(b) * (mu[:, None] * mu[None, :]), x, b)
    else:
        var[live_np] = be.numpy((xc * xc).sum(axis=0)) / denom
        l2_var[live_np] = be.numpy((nc * nc).sum(axis=0)) / denom
        if method == "svd":  # the reference: svdvals, and the d' x d' covariance
            cov = be.offdiag_sq_sum((xc.T @ xc) / denom) / d
            (sv_n, route_n), (sv_r, route_r) = (be.svdvals(normed), "svd"), (be.svdvals(x), "svd")
        else:  # row route: one b x b Gram; rows scaled for the normalised one, double-centred for C
            raw = x @ x.T
            if b >= 2:
                row_mean = raw.mean(axis=1)
                centred = raw - row_mean[:, None] - row_mean[None, :] + row_mean.mean()
                cov = (float(be.numpy((centred * centred).sum())) / denom**2 - float(var @ var)) / d
            sv_n, route_n = _spectrum(be, raw / (scale[:, None] * scale[None, :]), normed, dz)
            sv_r, route_r = _spectrum(be, raw, x, dz)
    l2_std = float(np.sqrt(l2_var).mean())
    routes = (route_n, route_r)
    return Core(_padded(sv_n, k), _padded(sv_r, k), np.sqrt(var), float(cov), l2_std, routes, (b, d))


NUMPY = NumpyBackend()
