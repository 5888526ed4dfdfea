"""collapsewatch.stats.collapse_stats against an independent float64 reference (numpy)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from collapsewatch.contract import CollapseStatsIn
from collapsewatch.stats import DEFAULT_HIST_EDGES, LINEAR_HIST_EDGES, collapse_stats

torch.set_num_threads(1)

SHAPES = [(12, 4), (6, 6), (4, 9), (40, 300)]  # b > d, b = d, b < d, and b << d (Gram covariance)
KINDS = ["random", "rank1", "tight"]


def make_matrix(kind: str, b: int, d: int, seed: int = 0) -> np.ndarray:
    """random: Gaussian (scaled per dimension); rank1: rows ± scaled copies of one vector; tight: unit
    rows, all k singular values equal."""
    rng = np.random.default_rng(seed)
    if kind == "random":
        return rng.standard_normal((b, d)) * rng.uniform(0.0, 2.5, d)
    if kind == "rank1":
        return np.outer(rng.uniform(0.5, 2.0, b) * rng.choice([-1.0, 1.0], b), rng.standard_normal(d))
    if b <= d:
        return np.linalg.qr(rng.standard_normal((d, d)))[0][:b]
    assert b % d == 0
    return np.vstack([np.linalg.qr(rng.standard_normal((d, d)))[0]] * (b // d))


def reference(e: np.ndarray, edges: np.ndarray, threshold: float) -> dict:
    b, d = e.shape
    k = min(b, d)
    normed = e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12)
    sv = np.linalg.svd(normed, compute_uv=False)
    lower, upper = math.sqrt(b) / k, math.sqrt(b / k)
    raw = np.linalg.svd(e, compute_uv=False)
    p = raw / raw.sum() + 1e-7
    std = e.std(axis=0, ddof=1)
    zc = e - e.mean(axis=0)
    cov = zc.T @ zc / (b - 1)
    counts, _ = np.histogram(np.clip(std, edges[0], edges[-1]), bins=edges)
    return {
        "mean_sv": sv.mean(),
        "sv_lower": lower,
        "sv_upper": upper,
        "sv_position": (sv.mean() - lower) / (upper - lower),
        "singular_values": sv[:256],
        "effective_rank": math.exp(-(p * np.log(p)).sum()),
        "dim_std": std,
        "std_hist": {"edges": edges, "counts": counts},
        "dead_dims": int((std < threshold).sum()),
        "cov_offdiag": ((cov**2).sum() - (np.diag(cov) ** 2).sum()) / d,
        "l2_std": normed.std(axis=0, ddof=1).mean(),
    }


def assert_matches(got: dict, want: dict) -> None:
    assert set(got) == set(want)
    for key in ("mean_sv", "sv_lower", "sv_upper", "effective_rank", "l2_std"):
        assert got[key] == pytest.approx(want[key], rel=1e-9), key
    assert got["sv_position"] == pytest.approx(np.clip(want["sv_position"], 0, 1), abs=1e-9)
    assert got["cov_offdiag"] == pytest.approx(want["cov_offdiag"], rel=1e-9, abs=1e-12)
    np.testing.assert_allclose(got["singular_values"], want["singular_values"], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(got["dim_std"], want["dim_std"], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(got["std_hist"]["edges"], want["std_hist"]["edges"], rtol=0, atol=0)
    assert got["std_hist"]["counts"] == want["std_hist"]["counts"].tolist()
    assert got["dead_dims"] == want["dead_dims"]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(("b", "d"), SHAPES)
def test_collapse_stats_match_numpy_reference(b: int, d: int, kind: str) -> None:
    e = make_matrix(kind, b, d)
    got = collapse_stats(torch.tensor(e))
    assert_matches(got, reference(e, np.array(DEFAULT_HIST_EDGES), 1e-3))


@pytest.mark.parametrize(("b", "d"), SHAPES)
def test_collapse_stats_position_is_zero_at_rank1_and_one_at_tight_frame(b: int, d: int) -> None:
    collapsed = collapse_stats(make_matrix("rank1", b, d))
    spread = collapse_stats(make_matrix("tight", b, d))
    assert collapsed["mean_sv"] == pytest.approx(collapsed["sv_lower"], rel=1e-9)
    assert collapsed["sv_position"] == pytest.approx(0.0, abs=1e-9)
    assert collapsed["effective_rank"] == pytest.approx(1.0, rel=1e-3)
    assert spread["mean_sv"] == pytest.approx(spread["sv_upper"], rel=1e-12)
    assert spread["sv_position"] == pytest.approx(1.0, abs=1e-9)
    assert spread["effective_rank"] == pytest.approx(min(b, d), rel=1e-3)


def test_collapse_stats_validate_against_wire_schema_and_json() -> None:
    stats = collapse_stats(torch.randn(64, 16))
    assert set(stats) == set(CollapseStatsIn.model_fields)
    parsed = CollapseStatsIn.model_validate(json.loads(json.dumps(stats, allow_nan=False)))
    assert parsed.model_dump() == stats
    assert all(type(v) is float for v in stats["singular_values"] + stats["dim_std"])
    assert type(stats["dead_dims"]) is int and type(stats["mean_sv"]) is float
    assert len(stats["std_hist"]["edges"]) == 65 and len(stats["std_hist"]["counts"]) == 64
    assert sum(stats["std_hist"]["counts"]) == 16


def test_collapse_stats_float32_and_numpy_inputs_are_computed_in_float64() -> None:
    e = make_matrix("random", 30, 10, seed=3).astype(np.float32)
    want = reference(e.astype(np.float64), np.array(DEFAULT_HIST_EDGES), 1e-3)
    assert_matches(collapse_stats(e), want)
    assert_matches(collapse_stats(torch.from_numpy(e).requires_grad_()), want)


def test_collapse_stats_keep_top_256_singular_values_descending() -> None:
    stats = collapse_stats(torch.randn(300, 280, dtype=torch.float64))
    values = stats["singular_values"]
    assert len(values) == 256
    assert values == sorted(values, reverse=True)
    assert min(values) > 0.0


@pytest.mark.parametrize(("b", "d"), [(1, 1), (1, 8), (8, 1)])
def test_collapse_stats_with_k_one_are_finite_and_defined(b: int, d: int) -> None:
    e = make_matrix("random", b, d, seed=4) + 0.1
    stats = collapse_stats(e)
    CollapseStatsIn.model_validate(stats)
    assert stats["sv_lower"] == stats["sv_upper"] == pytest.approx(math.sqrt(b))
    assert stats["mean_sv"] == pytest.approx(math.sqrt(b))
    assert stats["sv_position"] == 1.0
    assert stats["effective_rank"] == pytest.approx(1.0, rel=1e-5)
    if b == 1:
        assert stats["dim_std"] == [0.0] * d
        assert stats["dead_dims"] == d
        assert stats["cov_offdiag"] == 0.0 and stats["l2_std"] == 0.0


def test_collapse_stats_all_zero_rows_are_defined() -> None:
    e = make_matrix("tight", 6, 6)
    e[[1, 4]] = 0.0
    stats = collapse_stats(e)
    CollapseStatsIn.model_validate(stats)
    want = reference(e, np.array(DEFAULT_HIST_EDGES), 1e-3)
    assert_matches(stats, want)  # the position is clipped at 0 when zero rows pull mean_sv below L
    zero = collapse_stats(np.zeros((5, 3)))
    CollapseStatsIn.model_validate(zero)
    assert zero["mean_sv"] == 0.0 and zero["sv_position"] == 0.0 and zero["effective_rank"] == 0.0
    assert zero["dead_dims"] == 3 and zero["std_hist"]["counts"][0] == 3
    assert zero["cov_offdiag"] == 0.0 and zero["l2_std"] == 0.0


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_collapse_stats_reject_non_finite_embeddings(bad: float) -> None:
    e = torch.randn(8, 4)
    e[2, 1] = bad
    with pytest.raises(ValueError, match=r"E contains 1 NaN/Inf value\(s\) out of 32"):
        collapse_stats(e)


@pytest.mark.parametrize(
    ("bad", "message"),
    [(torch.zeros(5), "2-D"), (torch.zeros(0, 3), "at least 1 sample"), (np.full((2, 2), 1e200), "overflow")],
)
def test_collapse_stats_reject_bad_shapes_and_values(bad: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        collapse_stats(bad)


def test_collapse_stats_use_custom_edges_and_threshold() -> None:
    e = make_matrix("random", 50, 20, seed=5)
    edges = np.array([0.5, 1.0, 1.5])
    stats = collapse_stats(e, hist_edges=edges.tolist(), dead_threshold=0.7)
    assert_matches(stats, reference(e, edges, 0.7))
    std = np.array(stats["dim_std"])
    assert stats["std_hist"]["counts"][0] == int((std < 1.0).sum())  # below the first edge: first bin
    assert stats["std_hist"]["counts"][-1] == int((std >= 1.0).sum())  # above the last edge: last bin


def test_collapse_stats_put_values_above_last_edge_in_last_bin() -> None:
    e = np.random.default_rng(6).standard_normal((100, 4)) * np.array([0.1, 1.0, 5.0, 50.0])
    counts = collapse_stats(e)["std_hist"]["counts"]
    assert counts[-1] == 2
    assert sum(counts) == 4


@pytest.mark.parametrize(
    ("edges", "message"),
    [
        ([1.0], "2 to 1025"),
        ([[0.0, 1.0]], "2 to 1025"),
        ([0.0, 1.0, 1.0], "strictly increasing"),
        ([0.0, math.nan], "finite"),
    ],
)
def test_collapse_stats_reject_bad_edges(edges: list, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        collapse_stats(torch.randn(4, 3), hist_edges=edges)


@pytest.mark.parametrize("threshold", [-1.0, math.nan])
def test_collapse_stats_reject_bad_threshold(threshold: float) -> None:
    with pytest.raises(ValueError, match="dead_threshold"):
        collapse_stats(torch.randn(4, 3), dead_threshold=threshold)


def test_default_hist_edges_are_a_dead_bin_then_log_spaced_from_1e_4_to_4() -> None:
    edges = np.array(DEFAULT_HIST_EDGES)
    assert len(edges) == 65 and edges[0] == 0.0 and edges[1] == 1e-4 and edges[-1] == 4.0
    ratios = edges[2:] / edges[1:-1]
    np.testing.assert_allclose(ratios, (4.0 / 1e-4) ** (1 / 63), rtol=1e-5)
    # declared as 6-digit decimals: every machine builds the same floats, so runs compare bin for bin
    assert all(float(f"{e:.6g}") == e for e in edges)
    assert list(edges) == json.loads(json.dumps(list(DEFAULT_HIST_EDGES)))


def test_default_hist_edges_resolve_unit_norm_scale_stds_that_linear_edges_squash() -> None:
    # d = 512 unit-norm embeddings: stds around 1/sqrt(512) = 0.044, here spread over [0.01, 0.05]
    e = with_stds(np.geomspace(0.01, 0.05, 40))
    counts = collapse_stats(e)["std_hist"]["counts"]
    assert sum(c > 0 for c in counts) >= 9 and max(counts) <= 6
    linear = collapse_stats(e, hist_edges=LINEAR_HIST_EDGES)["std_hist"]["counts"]
    assert sum(c > 0 for c in linear) <= 2  # what the old default showed: everything in two bins
    # unnormalised embeddings (stds around gamma = 1) spread just as well
    counts = collapse_stats(with_stds(np.geomspace(0.3, 3.0, 40)))["std_hist"]["counts"]
    assert sum(c > 0 for c in counts) >= 9 and max(counts) <= 6


def with_stds(stds: np.ndarray, b: int = 400) -> np.ndarray:
    e = np.random.default_rng(7).standard_normal((b, len(stds)))
    e = (e - e.mean(0)) / e.std(0, ddof=1) * stds
    np.testing.assert_allclose(collapse_stats(e)["dim_std"], stds, rtol=1e-9)
    return e


def test_collapse_stats_put_std_on_an_interior_edge_in_the_upper_bin() -> None:
    column = np.array([-1.0, -1.0, 1.0, 1.0, 0.0])  # unbiased std exactly 1
    stats = collapse_stats(np.stack([column, 0.25 * column], axis=1), hist_edges=[0.0, 1.0, 2.0])
    assert stats["dim_std"] == [1.0, 0.25]
    assert stats["std_hist"]["counts"] == [1, 1]
