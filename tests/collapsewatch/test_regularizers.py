"""collapsewatch.regularizers against independent float64 references (numpy) and official transcriptions."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from collapsewatch.regularizers import (
    VICRegLoss,
    mean_singular_value,
    svmax_bounds,
    svmax_loss,
    use_gram_path,
    vicreg_covariance,
    vicreg_loss,
    vicreg_variance,
)

torch.set_num_threads(1)

SHAPES = [(12, 4), (6, 6), (4, 9)]  # b > d, b = d, b < d
KINDS = ["random", "rank1", "tight"]
METHODS = ["gram", "svd"]


# ---------------------------------------------------------------- independent references (numpy)
def make_matrix(kind: str, b: int, d: int, seed: int = 0) -> np.ndarray:
    """random: Gaussian; rank1: rows ± scaled copies of one vector; tight: unit rows, all k singular
    values equal (orthonormal rows if b <= d, else b/d stacked copies of an orthogonal matrix)."""
    rng = np.random.default_rng(seed)
    if kind == "random":
        return rng.standard_normal((b, d))
    if kind == "rank1":
        return np.outer(rng.uniform(0.5, 2.0, b) * rng.choice([-1.0, 1.0], b), rng.standard_normal(d))
    q, _ = np.linalg.qr(rng.standard_normal((max(b, d), max(b, d))))
    if b <= d:
        return q[:b, :d]
    assert b % d == 0
    return np.vstack([np.linalg.qr(rng.standard_normal((d, d)))[0]] * (b // d))


def np_normalize(e: np.ndarray) -> np.ndarray:
    return e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12)


def np_mean_sv(e: np.ndarray) -> float:
    return float(np.linalg.svd(e, compute_uv=False).mean())


def np_bounds(b: int, d: int) -> tuple[float, float]:
    k = min(b, d)
    return math.sqrt(b) / k, math.sqrt(b / k)


def np_var_term(z: np.ndarray, gamma: float, eps: float) -> float:
    std = np.sqrt(z.var(axis=0, ddof=1) + eps)
    return float(np.maximum(gamma - std, 0.0).mean())


def np_cov_term(z: np.ndarray) -> float:
    n, d = z.shape
    zc = z - z.mean(axis=0)
    c = zc.T @ zc / (n - 1)
    return float(((c**2).sum() - (np.diag(c) ** 2).sum()) / d)


def t64(a: np.ndarray, grad: bool = False) -> torch.Tensor:
    return torch.tensor(a, dtype=torch.float64, requires_grad=grad)


def official_vicreg(x: torch.Tensor, y: torch.Tensor, sim: float, std: float, cov: float) -> torch.Tensor:
    """Literal transcription of facebookresearch/vicreg main_vicreg.py, VICReg.forward (one process:
    FullGatherLayer is the identity, batch_size = rows, num_features = columns)."""

    def off_diagonal(x: torch.Tensor) -> torch.Tensor:
        n, m = x.shape
        assert n == m
        return x.flatten()[:-1].view(n - 1, n + 1)[:, 1:].flatten()

    batch_size, num_features = x.shape
    repr_loss = F.mse_loss(x, y)
    x = x - x.mean(dim=0)
    y = y - y.mean(dim=0)
    std_x = torch.sqrt(x.var(dim=0) + 0.0001)
    std_y = torch.sqrt(y.var(dim=0) + 0.0001)
    std_loss = torch.mean(F.relu(1 - std_x)) / 2 + torch.mean(F.relu(1 - std_y)) / 2
    cov_x = (x.T @ x) / (batch_size - 1)
    cov_y = (y.T @ y) / (batch_size - 1)
    cov_loss = off_diagonal(cov_x).pow_(2).sum().div(num_features) + off_diagonal(cov_y).pow_(2).sum().div(
        num_features
    )
    return sim * repr_loss + std * std_loss + cov * cov_loss


# ---------------------------------------------------------------- bounds
@pytest.mark.parametrize(("b", "d"), [(1, 1), (1, 7), (7, 1), (144, 128), (128, 144), (64, 2048)])
def test_svmax_bounds_equal_general_formula(b: int, d: int) -> None:
    assert svmax_bounds(b, d) == pytest.approx(np_bounds(b, d), rel=1e-15)


def test_svmax_bounds_equal_paper_formula_when_b_at_least_d() -> None:
    for b, d in [(144, 128), (128, 128), (12, 4)]:
        assert svmax_bounds(b, d) == pytest.approx((math.sqrt(b) / d, math.sqrt(b / d)))


def test_svmax_bounds_paper_formula_wrong_when_b_less_than_d() -> None:
    b, d = 4, 9
    lower, upper = svmax_bounds(b, d)
    rank1 = np_normalize(make_matrix("rank1", b, d))
    tight = make_matrix("tight", b, d)
    # The general bounds are attained ...
    assert np_mean_sv(rank1) == pytest.approx(lower, rel=1e-12)
    assert np_mean_sv(tight) == pytest.approx(upper, rel=1e-12)
    # ... while the paper's "upper bound" √(b/d) is exceeded by a unit-row matrix, and its lower bound
    # √b/d is strictly below the true minimum (so the position computed with it never reaches 0).
    assert np_mean_sv(tight) > math.sqrt(b / d) + 0.1
    assert math.sqrt(b) / d < lower - 0.1


@pytest.mark.parametrize(("b", "d"), [*SHAPES, (50, 3), (3, 50)])
def test_svmax_bounds_contain_random_unit_row_matrices(b: int, d: int) -> None:
    lower, upper = svmax_bounds(b, d)
    for seed in range(5):
        value = np_mean_sv(np_normalize(make_matrix("random", b, d, seed)))
        assert lower - 1e-12 <= value <= upper + 1e-12


@pytest.mark.parametrize("bad", [(0, 3), (3, 0), (-1, 2), (2.0, 3), (True, 3)])
def test_svmax_bounds_reject_bad_sizes(bad: tuple[int, int]) -> None:
    with pytest.raises(ValueError, match="must be an integer >= 1"):
        svmax_bounds(*bad)


# ---------------------------------------------------------------- mean singular value
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(("b", "d"), SHAPES)
def test_mean_singular_value_matches_numpy(b: int, d: int, kind: str, method: str) -> None:
    e = make_matrix(kind, b, d)
    got = mean_singular_value(t64(e), method=method).item()  # type: ignore[arg-type]
    assert got == pytest.approx(np_mean_sv(e), rel=1e-6 if kind == "rank1" else 1e-12)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize(("b", "d"), SHAPES)
def test_mean_singular_value_hits_bounds_on_rank1_and_tight(b: int, d: int, method: str) -> None:
    lower, upper = svmax_bounds(b, d)
    rank1 = mean_singular_value(t64(np_normalize(make_matrix("rank1", b, d))), method=method)  # type: ignore[arg-type]
    tight = mean_singular_value(t64(make_matrix("tight", b, d)), method=method)  # type: ignore[arg-type]
    assert rank1.item() == pytest.approx(lower, rel=1e-6)
    assert tight.item() == pytest.approx(upper, rel=1e-12)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize(("b", "d"), SHAPES)
def test_mean_singular_value_gradcheck_passes(b: int, d: int, method: str) -> None:
    e = t64(make_matrix("random", b, d, seed=3), grad=True)
    assert torch.autograd.gradcheck(lambda x: mean_singular_value(x, method=method), (e,))  # type: ignore[arg-type]


@pytest.mark.parametrize(("b", "d"), [(64, 512), (512, 64), (96, 384)])
def test_mean_singular_value_gram_float32_within_tolerance_of_svdvals(b: int, d: int) -> None:
    torch.manual_seed(0)
    e = F.normalize(torch.randn(b, d), dim=1)
    x_fast = e.clone().requires_grad_()
    x_ref = e.clone().requires_grad_()
    fast = mean_singular_value(x_fast, method="gram")
    ref = torch.linalg.svdvals(x_ref).mean()
    fast.backward()
    ref.backward()
    assert use_gram_path(b, d)
    assert fast.dtype == torch.float32
    assert abs(fast.item() - ref.item()) / ref.item() < 2e-3
    assert x_fast.grad is not None and x_ref.grad is not None
    assert ((x_fast.grad - x_ref.grad).norm() / x_ref.grad.norm()).item() < 2e-3


@pytest.mark.parametrize(("dtype", "rel"), [(torch.float64, 1e-5), (torch.float32, 0.05)])
@pytest.mark.parametrize(("b", "d"), [(32, 256), (256, 32), (16, 16)])
def test_mean_singular_value_rank1_gram_value_and_gradient_stay_finite(
    b: int, d: int, dtype: torch.dtype, rel: float
) -> None:
    e = torch.tensor(np_normalize(make_matrix("rank1", b, d)), dtype=dtype, requires_grad=True)
    value = mean_singular_value(e, method="gram")
    value.backward()
    lower = svmax_bounds(b, d)[0]
    assert e.grad is not None and torch.isfinite(e.grad).all()
    assert lower * (1 - 1e-6) <= value.item() <= lower * (1 + rel)
    # The gradient is u1 v1ᵀ/k (norm 1/k) plus damped noise directions of norm <= 1/k each.
    assert e.grad.norm().item() <= math.sqrt(min(b, d)) / min(b, d) + 1e-6


def test_mean_singular_value_rank1_gram_gradient_equals_top_singular_pair_in_float64() -> None:
    e = np_normalize(make_matrix("rank1", 8, 40))
    x = t64(e, grad=True)
    mean_singular_value(x, method="gram").backward()
    u, _, vt = np.linalg.svd(e)
    assert x.grad is not None
    np.testing.assert_allclose(x.grad.numpy(), np.outer(u[:, 0], vt[0]) / 8, atol=1e-6)


@pytest.mark.parametrize("method", METHODS)
def test_mean_singular_value_zero_input_gives_zero_and_finite_gradient(method: str) -> None:
    x = torch.zeros(4, 10, requires_grad=True)
    value = mean_singular_value(x, method=method)  # type: ignore[arg-type]
    value.backward()
    assert value.item() == 0.0
    assert x.grad is not None and torch.isfinite(x.grad).all()


def test_mean_singular_value_half_precision_computes_in_float32() -> None:
    e = F.normalize(torch.randn(16, 64), dim=1)
    got = mean_singular_value(e.to(torch.bfloat16))
    assert got.dtype == torch.bfloat16
    assert got.float().item() == pytest.approx(np_mean_sv(e.double().numpy()), rel=2e-2)


def test_use_gram_path_follows_aspect_ratio() -> None:
    assert use_gram_path(256, 2048) and use_gram_path(2048, 256) and use_gram_path(64, 128)
    assert not use_gram_path(128, 128) and not use_gram_path(144, 128)
    assert use_gram_path(128, 128, "gram") and not use_gram_path(64, 2048, "svd")
    with pytest.raises(ValueError, match="method must be"):
        use_gram_path(3, 3, "qr")  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [torch.zeros(3), torch.zeros(0, 3), torch.zeros(2, 2, dtype=torch.long)])
def test_mean_singular_value_rejects_bad_input(bad: torch.Tensor) -> None:
    with pytest.raises(ValueError, match="E "):
        mean_singular_value(bad)


# ---------------------------------------------------------------- SVMax loss
@pytest.mark.parametrize("bounded", [True, False])
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(("b", "d"), SHAPES)
def test_svmax_loss_matches_numpy(b: int, d: int, kind: str, bounded: bool) -> None:
    e = make_matrix(kind, b, d, seed=1)
    lower, upper = np_bounds(b, d)
    s_mu = np_mean_sv(np_normalize(e))
    want = 0.3 * math.exp((upper - s_mu) / (upper - lower)) if bounded else -0.3 * s_mu
    assert svmax_loss(t64(e), lam=0.3, bounded=bounded).item() == pytest.approx(want, rel=1e-6)


@pytest.mark.parametrize(("b", "d"), SHAPES)
def test_svmax_loss_bounded_spans_lam_to_lam_e(b: int, d: int) -> None:
    collapsed = svmax_loss(t64(make_matrix("rank1", b, d)), lam=2.0)
    spread = svmax_loss(t64(make_matrix("tight", b, d)), lam=2.0)
    assert collapsed.item() == pytest.approx(2.0 * math.e, rel=1e-6)
    assert spread.item() == pytest.approx(2.0, rel=1e-9)


def test_svmax_loss_ignores_row_scale() -> None:
    e = make_matrix("random", 12, 4, seed=2)
    scaled = e * np.linspace(0.1, 10.0, 12)[:, None]
    for bounded in (True, False):
        assert svmax_loss(t64(scaled), bounded=bounded).item() == pytest.approx(
            svmax_loss(t64(e), bounded=bounded).item(), rel=1e-12
        )


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("bounded", [True, False])
@pytest.mark.parametrize(("b", "d"), SHAPES)
def test_svmax_loss_gradcheck_passes(b: int, d: int, bounded: bool, method: str) -> None:
    e = t64(make_matrix("random", b, d, seed=4), grad=True)
    assert torch.autograd.gradcheck(
        lambda x: svmax_loss(x, lam=0.7, bounded=bounded, method=method),  # type: ignore[arg-type]
        (e,),
    )


@pytest.mark.parametrize(("b", "d"), [(1, 5), (6, 1), (1, 1)])
def test_svmax_loss_with_k_one_has_no_effect(b: int, d: int) -> None:
    for bounded, want in ((True, 0.0), (False, -0.5 * math.sqrt(b))):
        x = t64(make_matrix("random", b, d, seed=5), grad=True)
        loss = svmax_loss(x, lam=0.5, bounded=bounded)
        loss.backward()
        assert loss.item() == pytest.approx(want, abs=1e-12)
        assert x.grad is not None
        assert x.grad.abs().max().item() < 1e-12


@pytest.mark.parametrize("lam", [-0.1, math.inf, math.nan])
def test_svmax_loss_rejects_bad_lambda(lam: float) -> None:
    with pytest.raises(ValueError, match="lam must be"):
        svmax_loss(torch.randn(4, 3), lam=lam)


# ---------------------------------------------------------------- VICReg
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(("b", "d"), SHAPES)
def test_vicreg_loss_matches_numpy(b: int, d: int, kind: str) -> None:
    za, zb = make_matrix(kind, b, d, seed=6), make_matrix("random", b, d, seed=7)
    got = vicreg_loss(t64(za), t64(zb), sim_coeff=2.0, std_coeff=3.0, cov_coeff=0.5, gamma=1.5, eps=1e-3)
    inv = float(((za - zb) ** 2).mean())
    var = (np_var_term(za, 1.5, 1e-3) + np_var_term(zb, 1.5, 1e-3)) / 2
    cov = np_cov_term(za) + np_cov_term(zb)
    assert isinstance(got, VICRegLoss)
    assert got.invariance.item() == pytest.approx(inv, rel=1e-12)
    assert got.variance.item() == pytest.approx(var, rel=1e-12, abs=1e-15)
    assert got.covariance.item() == pytest.approx(cov, rel=1e-9, abs=1e-12)
    assert got.total.item() == pytest.approx(2.0 * inv + 3.0 * var + 0.5 * cov, rel=1e-9)


@pytest.mark.parametrize("cov_method", ["auto", "gram", "direct"])
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(("b", "d"), [*SHAPES, (32, 128)])
def test_vicreg_loss_matches_official_transcription(b: int, d: int, kind: str, cov_method: str) -> None:
    torch.manual_seed(b + d)
    za = t64(make_matrix(kind, b, d, seed=8)) * 0.7
    zb = za + 0.1 * torch.randn(b, d, dtype=torch.float64)
    want = official_vicreg(za.clone(), zb.clone(), 25.0, 25.0, 1.0)
    got = vicreg_loss(za, zb, cov_method=cov_method)  # type: ignore[arg-type]
    assert got.total.item() == pytest.approx(want.item(), rel=1e-10)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(("b", "d"), [*SHAPES, (16, 200)])
def test_vicreg_covariance_gram_path_equals_direct(b: int, d: int, kind: str) -> None:
    x_gram = t64(make_matrix(kind, b, d, seed=9), grad=True)
    x_direct = x_gram.detach().clone().requires_grad_()
    gram = vicreg_covariance(x_gram, method="gram")
    direct = vicreg_covariance(x_direct, method="direct")
    gram.backward()
    direct.backward()
    assert gram.item() == pytest.approx(direct.item(), rel=1e-10, abs=1e-14)
    assert x_gram.grad is not None and x_direct.grad is not None
    torch.testing.assert_close(x_gram.grad, x_direct.grad, rtol=1e-8, atol=1e-12)


@pytest.mark.parametrize(("n", "d"), [(64, 512), (128, 256)])
def test_vicreg_covariance_gram_path_equals_direct_in_float32(n: int, d: int) -> None:
    torch.manual_seed(1)
    z = torch.randn(n, d) @ torch.randn(d, d) / math.sqrt(d)  # correlated features
    gram, direct = vicreg_covariance(z, method="gram"), vicreg_covariance(z, method="direct")
    assert gram.dtype == torch.float32
    assert abs(gram.item() - direct.item()) / direct.item() < 1e-5


@pytest.mark.parametrize("cov_method", ["gram", "direct"])
@pytest.mark.parametrize(("b", "d"), SHAPES)
def test_vicreg_loss_gradcheck_passes(b: int, d: int, cov_method: str) -> None:
    za = t64(make_matrix("random", b, d, seed=10) * 0.5, grad=True)
    zb = t64(make_matrix("random", b, d, seed=11) * 0.5, grad=True)
    assert torch.autograd.gradcheck(
        lambda x, y: vicreg_loss(x, y, cov_method=cov_method).total,  # type: ignore[arg-type]
        (za, zb),
    )


def test_vicreg_variance_is_gamma_minus_sqrt_eps_for_constant_embeddings() -> None:
    z = torch.ones(10, 6, dtype=torch.float64, requires_grad=True)
    value = vicreg_variance(z, gamma=1.0, eps=1e-4)
    value.backward()
    assert value.item() == pytest.approx(1.0 - 1e-2)
    assert z.grad is not None and torch.isfinite(z.grad).all()


def test_vicreg_loss_rejects_bad_shapes() -> None:
    with pytest.raises(ValueError, match="same shape"):
        vicreg_loss(torch.randn(4, 3), torch.randn(4, 5))
    with pytest.raises(ValueError, match="za needs at least 2 row"):
        vicreg_loss(torch.randn(1, 3), torch.randn(1, 3))
    with pytest.raises(ValueError, match="method must be"):
        vicreg_covariance(torch.randn(4, 3), method="svd")  # type: ignore[arg-type]


@pytest.mark.parametrize("method", METHODS)
def test_mean_singular_value_works_under_autocast(method: str) -> None:
    e = F.normalize(torch.randn(16, 64), dim=1).requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        value = mean_singular_value(e, method=method)  # type: ignore[arg-type]
    value.backward()
    assert value.dtype == torch.float32
    assert value.item() == pytest.approx(np_mean_sv(e.detach().double().numpy()), rel=1e-5)
    assert e.grad is not None and torch.isfinite(e.grad).all()
