"""Embedding regularizers: SVMax (Taha et al. 2021) and VICReg (Bardes, Ponce, LeCun 2022).

Formulas: DESIGN.md §3 (the math contract). Every function takes a batch of embeddings with rows =
samples and returns a scalar tensor the caller adds to its own loss.

Fast paths (exact in exact arithmetic, chosen automatically by shape):

* ``mean_singular_value`` uses the eigenvalues of the smaller Gram matrix (``E Eᵀ`` when b < d,
  ``Eᵀ E`` when d < b) when the long side is at least ``GRAM_ASPECT`` times the short side, and
  ``torch.linalg.svdvals`` otherwise. Tolerance against ``svdvals``: on full-rank batches the mean
  agrees to ~1e-6 relative in float32 (tested at 2e-3, the product's contract) and ~1e-12 in float64.
  Squaring the singular values costs precision only for values below ~√eps·s_max (≈3e-4·s_max in
  float32): they come out as √(rounding noise) instead of their true value.
* ``vicreg_covariance`` uses ``‖C‖_F² = ‖Z_c Z_cᵀ‖_F² / (n-1)²`` when n < d (O(n²d) instead of O(nd²)).
"""

from __future__ import annotations

import math
from typing import Literal, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from collapsewatch.bounds import NORMALIZE_EPS, svmax_bounds

Method = Literal["auto", "gram", "svd"]
CovMethod = Literal["auto", "gram", "direct"]

GRAM_ASPECT = 2.0
"""``method="auto"`` takes the Gram path when max(b, d) >= GRAM_ASPECT * min(b, d)."""

GRAD_FLOOR = 64.0
"""Eigenvalues below ``GRAD_FLOOR * eps * λ_max`` get a damped gradient (see ``mean_singular_value``)."""


def _check_matrix(x: Tensor, name: str, min_rows: int = 1) -> None:
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() != 2:
        raise ValueError(f"{name} must be 2-D (batch x features), got shape {tuple(x.shape)}")
    if x.shape[0] < min_rows or x.shape[1] < 1:
        raise ValueError(f"{name} needs at least {min_rows} row(s) and 1 column, got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor, got {x.dtype}")


def use_gram_path(b: int, d: int, method: Method = "auto") -> bool:
    """Whether ``mean_singular_value`` takes the Gram-eigenvalue path for a b x d input."""
    if method not in ("auto", "gram", "svd"):
        raise ValueError(f"method must be 'auto', 'gram' or 'svd', got {method!r}")
    if method == "auto":
        return max(b, d) >= GRAM_ASPECT * min(b, d)
    return method == "gram"


class _GramMeanSV(torch.autograd.Function):
    """Mean of √λ_i(G) over the k eigenvalues of the smaller Gram matrix G, with a safe gradient."""

    @staticmethod
    def forward(ctx, E: Tensor) -> Tensor:
        rows = E.shape[0] <= E.shape[1]
        gram = E @ E.T if rows else E.T @ E
        if ctx.needs_input_grad[0]:
            lam, vecs = torch.linalg.eigh(gram)
            ctx.save_for_backward(E, lam, vecs)
            ctx.rows = rows
        else:
            lam = torch.linalg.eigvalsh(gram)
        return lam.clamp_min(0).sqrt().mean()

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: Tensor) -> Tensor:
        E, lam, vecs = ctx.saved_tensors
        finfo = torch.finfo(lam.dtype)
        floor = (lam.max().clamp_min(0) * (GRAD_FLOOR * finfo.eps)).clamp_min(finfo.tiny)
        # d mean(√λ)/dG = V diag(1/(2k√λ)) Vᵀ; through G = E Eᵀ this gives G^{-1/2} E / k = U Vᵀ / k.
        weights = grad / (lam.numel() * lam.clamp_min(floor).sqrt())
        m = (vecs * weights) @ vecs.T
        return m @ E if ctx.rows else E @ m


def mean_singular_value(E: Tensor, *, method: Method = "auto") -> Tensor:
    """Differentiable mean of the k = min(b, d) singular values of ``E`` (the nuclear norm over k).

    ``method``: "svd" = ``torch.linalg.svdvals``; "gram" = eigenvalues of the smaller Gram matrix,
    clamped at 0 before the square root; "auto" = "gram" when max(b, d) >= 2·min(b, d), else "svd"
    (same rule on every device). float16/bfloat16 inputs are computed in float32 and cast back;
    autocast is switched off inside.

    Gram-path gradient: ``Σ_i u_i v_iᵀ / k`` (the exact gradient of the nuclear norm), except that an
    eigenvalue below ``floor = 64·eps·λ_max`` (eps of the dtype; plus the dtype's smallest normal
    number, so an all-zero input works) uses √floor in the derivative: its direction contributes
    ``(s_i/√floor)·u_i v_iᵀ / k`` (norm <= 1/k) instead of ``u_i v_iᵀ / k``. In float32 that damps
    only singular values below ≈2.8e-3·s_max, which are within the Gram solver's rounding noise.

    At exact collapse (rank 1) value and gradient stay finite. The gradient is ~ u1 v1ᵀ/k plus damped
    noise directions. The svd path gives L up to rounding. The Gram path in float32 gives a little
    more than L: each of the k-1 zero eigenvalues comes out as rounding noise (|λ| up to ~1e-6·λ_max)
    and the positive ones add their square roots. Measured (bench/stats.py shapes, 1-2 threads):
    +0.1 % to +3 % at (256..1024, 2048..8192), up to +4 % at (4096, 512); in float64 < 1e-5 relative.
    Reported statistics use ``collapsewatch.stats`` (float64, its own checked Gram route), never this path.
    """
    _check_matrix(E, "E")
    compute = E.float() if E.dtype in (torch.float16, torch.bfloat16) else E
    gram = use_gram_path(E.shape[0], E.shape[1], method)
    with torch.autocast(E.device.type, enabled=False):  # eigh/svd need float32+, even under autocast
        out = _GramMeanSV.apply(compute) if gram else torch.linalg.svdvals(compute).mean()
    assert isinstance(out, Tensor)
    return out.to(E.dtype)


def svmax_loss(E: Tensor, lam: float = 1.0, bounded: bool = True, *, method: Method = "auto") -> Tensor:
    """The SVMax regularizer on the L2-normalised rows of ``E``; add it to your own loss.

    bounded (the paper's retrieval form): ``lam · exp((U - s_μ)/(U - L))``, which goes from lam (spread)
    to lam·e (collapsed). vanilla: ``-lam · s_μ``. Rows are normalised with ``F.normalize`` (eps 1e-12),
    no centering; an all-zero row stays zero.

    When k = min(b, d) = 1 every unit-row matrix has s_μ = √b = L = U, so the regularizer carries no
    information: bounded returns a zero (still attached to the graph), vanilla returns the constant
    -lam·√b; both gradients are zero, so training is unaffected.
    """
    _check_matrix(E, "E")
    if not math.isfinite(lam) or lam < 0:
        raise ValueError(f"lam must be a finite number >= 0, got {lam!r}")
    lower, upper = svmax_bounds(*E.shape)
    normed = F.normalize(E, p=2.0, dim=1, eps=NORMALIZE_EPS)
    if bounded and upper == lower:
        return normed.sum() * 0.0
    s_mu = mean_singular_value(normed, method=method)
    if bounded:
        return lam * torch.exp((upper - s_mu) / (upper - lower))
    return -lam * s_mu


class VICRegLoss(NamedTuple):
    """The VICReg loss and its three (unweighted) parts, official ``main_vicreg.py`` convention."""

    total: Tensor
    invariance: Tensor  # F.mse_loss(za, zb)
    variance: Tensor  # (v(za) + v(zb)) / 2
    covariance: Tensor  # c(za) + c(zb)


def vicreg_variance(z: Tensor, gamma: float = 1.0, eps: float = 1e-4) -> Tensor:
    """v(Z) = mean_j relu(gamma - √(Var(z_j) + ε)), unbiased variance over the batch (needs n >= 2).

    Usable as a regularizer with any objective (std, not variance: its gradient survives near 0).
    """
    _check_matrix(z, "z", min_rows=2)
    std = torch.sqrt(z.var(dim=0) + eps)
    return F.relu(gamma - std).mean()


def vicreg_covariance(z: Tensor, *, method: CovMethod = "auto") -> Tensor:
    """c(Z) = (1/d) Σ_{i≠j} C_ij², C = Z_cᵀZ_c/(n-1) (needs n >= 2).

    ``method``: "direct" forms the d x d matrix; "gram" uses ‖C‖_F² = ‖Z_c Z_cᵀ‖_F²/(n-1)² minus
    Σ_j C_jj² (the sums of squares are accumulated in float64 to limit the cancellation);
    "auto" = "gram" when n < d.
    """
    _check_matrix(z, "z", min_rows=2)
    if method not in ("auto", "gram", "direct"):
        raise ValueError(f"method must be 'auto', 'gram' or 'direct', got {method!r}")
    n, d = z.shape
    zc = z - z.mean(dim=0)
    if method == "gram" or (method == "auto" and n < d):
        acc = torch.float64 if zc.dtype in (torch.float32, torch.float64) else torch.float32
        fro2 = (zc @ zc.T).to(acc).pow(2).sum() / (n - 1) ** 2
        diag = zc.to(acc).pow(2).sum(dim=0) / (n - 1)
        return ((fro2 - diag.pow(2).sum()) / d).to(z.dtype)
    cov = zc.T @ zc / (n - 1)
    off = cov.flatten()[:-1].view(d - 1, d + 1)[:, 1:] if d > 1 else cov.new_zeros(0)
    return off.pow(2).sum() / d


def vicreg_loss(
    za: Tensor,
    zb: Tensor,
    sim_coeff: float = 25.0,
    std_coeff: float = 25.0,
    cov_coeff: float = 1.0,
    gamma: float = 1.0,
    eps: float = 1e-4,
    *,
    cov_method: CovMethod = "auto",
) -> VICRegLoss:
    """VICReg on two views' embeddings (n x d each), as the official ``main_vicreg.py`` computes it.

    total = sim·mse(za, zb) + std·(v(za) + v(zb))/2 + cov·(c(za) + c(zb)). The ½ on the variance term
    is the official code's (the paper's pseudocode and solo-learn omit it).
    """
    _check_matrix(za, "za", min_rows=2)
    _check_matrix(zb, "zb", min_rows=2)
    if za.shape != zb.shape:
        raise ValueError(f"za and zb must have the same shape, got {tuple(za.shape)} and {tuple(zb.shape)}")
    invariance = F.mse_loss(za, zb)
    variance = (vicreg_variance(za, gamma, eps) + vicreg_variance(zb, gamma, eps)) / 2
    covariance = vicreg_covariance(za, method=cov_method) + vicreg_covariance(zb, method=cov_method)
    total = sim_coeff * invariance + std_coeff * variance + cov_coeff * covariance
    return VICRegLoss(total, invariance, variance, covariance)
