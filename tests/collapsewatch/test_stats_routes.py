"""collapse_stats' routes agree: the float64 Gram route with svdvals (DESIGN.md §3: 1e-6 relative on
s_mu and rho, including exact collapse), and the numpy route with the torch route (1e-9), also in a
process where torch cannot be imported at all."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from collapsewatch.stats import collapse_core, collapse_stats

torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parents[2]
SHAPES = [(512, 128), (512, 512), (64, 512), (512, 32), (300, 700), (128, 127)]
KINDS = ["random", "relu", "dead", "offset", "rank3", "rank1", "identical", "near", "graded"]


def make(kind: str, b: int, d: int, seed: int = 0) -> np.ndarray:
    """random/relu/dead (half the columns zero)/offset (mean 1e3): full rank; rank3: low rank; rank1
    (± scaled copies of one row) and identical rows: exact collapse; near: rank 1 plus 1e-9 noise;
    graded: singular values from 1 down to 1e-12."""
    rng = np.random.default_rng(seed)
    gauss = rng.standard_normal((b, d))
    if kind == "random":
        return gauss * rng.uniform(0.1, 2.0, d)
    if kind in ("relu", "dead"):
        e = np.maximum(gauss @ rng.standard_normal((d, d)) / np.sqrt(d) + 0.3, 0.0)
        if kind == "dead":
            e[:, ::2] = 0.0
        return e
    if kind == "offset":
        return gauss + 1e3
    if kind == "rank3":
        return rng.standard_normal((b, 3)) @ rng.standard_normal((3, d))
    if kind == "rank1":
        return np.outer(rng.uniform(0.5, 2.0, b) * rng.choice([-1.0, 1.0], b), rng.standard_normal(d))
    if kind == "identical":
        return np.tile(np.abs(rng.standard_normal(d)), (b, 1))
    if kind == "near":
        return np.outer(rng.uniform(0.5, 2.0, b), rng.standard_normal(d)) + 1e-9 * gauss
    k = min(b, d)
    u = np.linalg.qr(rng.standard_normal((b, k)))[0]
    v = np.linalg.qr(rng.standard_normal((d, k)))[0]
    return (u * np.geomspace(1.0, 1e-12, k)) @ v.T


def close(got: float, want: float, rel: float, floor: float) -> bool:
    return abs(got - want) <= rel * abs(want) + floor


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(("b", "d"), SHAPES)
def test_gram_route_agrees_with_svdvals_on_mean_sv_and_position(b: int, d: int, kind: str) -> None:
    e = make(kind, b, d)
    fast, ref = collapse_stats(e), collapse_stats(e, method="svd")
    assert close(fast["mean_sv"], ref["mean_sv"], 1e-6, 0.0)
    assert close(fast["sv_position"], ref["sv_position"], 1e-6, 1e-12)
    assert close(fast["effective_rank"], ref["effective_rank"], 1e-6, 0.0)
    np.testing.assert_allclose(fast["singular_values"], ref["singular_values"], rtol=1e-6, atol=1e-9)
    for key in ("l2_std", "cov_offdiag"):
        assert close(fast[key], ref[key], 1e-9, 1e-12), key
    np.testing.assert_allclose(fast["dim_std"], ref["dim_std"], rtol=1e-12, atol=0)
    assert fast["std_hist"] == ref["std_hist"] and fast["dead_dims"] == ref["dead_dims"]


@pytest.mark.parametrize(("b", "d"), [(512, 128), (512, 512), (64, 512)])
def test_gram_route_is_taken_for_healthy_embeddings_and_svdvals_at_exact_collapse(b: int, d: int) -> None:
    for kind in ("random", "relu", "dead"):
        core, _ = collapse_core(make(kind, b, d))
        assert core.routes == ("gram", "gram"), kind
    for kind in ("rank1", "identical"):
        core, _ = collapse_core(make(kind, b, d))
        assert core.routes[0] == "svd", kind  # squaring cannot resolve the zero singular values
        stats = collapse_stats(make(kind, b, d))
        assert stats["mean_sv"] == pytest.approx(stats["sv_lower"], rel=1e-9)
        assert stats["sv_position"] == pytest.approx(0.0, abs=1e-9)


@pytest.mark.parametrize("kind", ["random", "relu", "dead", "rank3", "rank1", "identical", "graded"])
@pytest.mark.parametrize(("b", "d"), [(512, 128), (64, 512), (40, 40), (7, 3)])
def test_numpy_route_equals_torch_route(b: int, d: int, kind: str) -> None:
    e = make(kind, b, d)
    (numpy_core, numpy_name), (torch_core, torch_name) = (
        collapse_core(e),
        collapse_core(torch.tensor(e), backend="torch"),
    )
    assert (numpy_name, torch_name) == ("numpy", "torch")
    assert numpy_core.routes == torch_core.routes
    scale = float(np.abs(e).max())
    assert_same(collapse_stats(e), collapse_stats(torch.tensor(e), backend="torch"), scale)
    e32 = e.astype(np.float32)
    assert_same(collapse_stats(e32), collapse_stats(torch.tensor(e32), backend="torch"), scale)


@pytest.mark.parametrize("kind", ["relu", "rank1"])
def test_tensors_are_read_with_torch_and_computed_like_arrays(kind: str) -> None:
    e = make(kind, 96, 24)
    tensor = torch.tensor(e, dtype=torch.float32, requires_grad=True)
    _, name = collapse_core(tensor)
    assert name == "numpy"
    assert_same(collapse_stats(tensor), collapse_stats(e.astype(np.float32)), float(np.abs(e).max()))
    assert_same(collapse_stats(e, backend="torch"), collapse_stats(e), float(np.abs(e).max()))
    with pytest.raises(ValueError, match="backend must be"):
        collapse_stats(e, backend="cupy")  # type: ignore[arg-type]


def assert_same(got: dict, want: dict, scale: float) -> None:
    """Equal within 1e-9 relative; stds and c(Z) within 1e-12 of the data's own scale (sums taken in
    another order differ by rounding there: identical rows give stds of 0 or 1e-15)."""
    assert set(got) == set(want)
    floors = {"dim_std": 1e-12 * scale, "cov_offdiag": 1e-12 * scale**4, "l2_std": 1e-12}
    for key, value in want.items():
        if key == "std_hist" or isinstance(value, int):
            assert got[key] == value, key
        elif isinstance(value, list):
            atol = floors.get(key, 1e-12 * max(value, default=0.0))
            np.testing.assert_allclose(got[key], value, rtol=1e-9, atol=atol, err_msg=key)
        else:
            assert close(got[key], value, 1e-9, floors.get(key, 1e-13)), key


CHILD = """
import json, sys

class BlockTorch:
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError("torch is blocked in this process")
        return None

sys.meta_path.insert(0, BlockTorch())
import numpy as np
import collapsewatch
from collapsewatch.stats import collapse_stats

matrices = json.loads(sys.stdin.read())
out = [collapse_stats(np.array(m)) for m in matrices]
out.append(collapse_stats(matrices[0]))  # plain nested lists work too
try:
    import torch  # noqa: F401
except ImportError:
    pass
else:
    raise SystemExit("torch was importable")
assert not [m for m in sys.modules if m == "torch" or m.startswith("torch.")], "torch was imported"
print(json.dumps(out))
"""


def test_numpy_route_works_and_never_imports_torch_when_torch_is_blocked() -> None:
    matrices = [make(kind, 60, 24, seed=3) for kind in ("relu", "rank3", "rank1")]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, "-c", CHILD],
        input=json.dumps([m.tolist() for m in matrices]),
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    got = json.loads(result.stdout)
    for stats, m in zip(got, [*matrices, matrices[0]], strict=True):
        assert_same(stats, collapse_stats(torch.tensor(m), backend="torch"), float(np.abs(m).max()))


def test_importing_stats_does_not_import_torch() -> None:
    code = "import sys, collapsewatch.stats, collapsewatch.stats_core; print('torch' in sys.modules)"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120, check=True
    )
    assert out.stdout.strip() == "False"


def test_numpy_blas_runs_on_one_thread_during_the_statistics_and_is_restored() -> None:
    threadpoolctl = pytest.importorskip("threadpoolctl")
    from collapsewatch import stats_core

    def blas_threads() -> list[int]:
        return [pool["num_threads"] for pool in threadpoolctl.threadpool_info() if pool["user_api"] == "blas"]

    before = blas_threads()
    if not before:
        pytest.skip("threadpoolctl sees no BLAS library in this process")
    seen: list[list[int]] = []
    original = stats_core.NumpyBackend.eigvalsh

    def spy(self: stats_core.NumpyBackend, gram: np.ndarray) -> np.ndarray:
        seen.append(blas_threads())
        return original(self, gram)

    stats_core.NumpyBackend.eigvalsh = spy  # type: ignore[method-assign]
    try:
        collapse_stats(make("relu", 64, 16))
    finally:
        stats_core.NumpyBackend.eigvalsh = original  # type: ignore[method-assign]
    assert seen and all(threads == [1] * len(before) for threads in seen)
    assert blas_threads() == before


@pytest.mark.parametrize("kind", ["random", "relu", "offset", "rank3", "near", "graded"])
@pytest.mark.parametrize(("b", "d"), [(512, 128), (64, 512), (300, 700)])
def test_gram_error_bound_covers_the_distance_to_svdvals(b: int, d: int, kind: str) -> None:
    from collapsewatch.stats_core import EPS64, gram_singular_values

    e = make(kind, b, d)
    for m in (e, e / np.linalg.norm(e, axis=1, keepdims=True)):
        ref = np.linalg.svd(m, compute_uv=False)
        gram, summed = (m.T @ m, b) if d < b else (m @ m.T, d)
        values, err = gram_singular_values(np.linalg.eigvalsh(gram), summed)
        assert err > 0.0
        slack = 4 * ref.size * EPS64 * ref[0]  # svdvals' own rounding
        assert abs(float(values.sum()) - float(ref.sum())) <= err + slack


def test_spectrum_takes_the_gram_route_only_within_tol_of_the_sum_above_the_floor() -> None:
    from collapsewatch.stats_core import NUMPY, _spectrum, gram_singular_values

    e = make("graded", 64, 32)
    gram = e.T @ e
    values, err = gram_singular_values(np.linalg.eigvalsh(gram), 64)
    floor = 0.5 * float(values.sum())
    tol = err / (float(values.sum()) - floor)
    assert _spectrum(NUMPY, gram, lambda: e, 64, tol * 1.001, floor)[1] == "gram"
    assert _spectrum(NUMPY, gram, lambda: e, 64, tol * 0.999, floor)[1] == "svd"
    assert _spectrum(NUMPY, gram, lambda: e, 64, tol * 0.999)[1] == "gram"  # no floor: more room


@pytest.mark.parametrize(("b", "d"), [(512, 128), (64, 512), (512, 512)])
@pytest.mark.parametrize("noise", [3e-2, 1e-3, 1e-5])
def test_position_near_collapse_keeps_its_relative_accuracy(b: int, d: int, noise: float) -> None:
    rng = np.random.default_rng(b + d)
    e = np.outer(rng.uniform(0.5, 2.0, b), rng.standard_normal(d)) + noise * rng.standard_normal((b, d))
    fast, ref = collapse_stats(e), collapse_stats(e, method="svd")
    assert 0.0 < ref["sv_position"] < 0.1
    assert close(fast["sv_position"], ref["sv_position"], 1e-6, 0.0)
    assert close(fast["mean_sv"], ref["mean_sv"], 1e-6, 0.0)


ZERO_ROWS = [(6, 6, (1, 4)), (12, 40, (0, 5, 11)), (30, 30, tuple(range(0, 30, 3)))]


def _unit_rows(e: np.ndarray) -> np.ndarray:
    return e / np.linalg.norm(e, axis=1, keepdims=True).clip(1e-12)


@pytest.mark.parametrize("backend", ["numpy", "torch"])
@pytest.mark.parametrize(("b", "d", "zero_rows"), ZERO_ROWS)
def test_all_zero_rows_on_the_row_route_give_exact_zero_singular_values(
    backend: str, b: int, d: int, zero_rows: tuple[int, ...]
) -> None:
    e = make("random", b, d, seed=b + d)
    e[list(zero_rows)] = 0.0
    core, _ = collapse_core(e, backend=backend)  # type: ignore[arg-type]
    assert core.routes == ("gram", "gram")
    live = b - len(zero_rows)
    for got, matrix in ((core.sv_raw, e), (core.sv_normed, _unit_rows(e))):
        want = np.linalg.svd(matrix, compute_uv=False)
        assert np.all(got[live:] == 0.0)  # exact zeros, not the root of rounding noise
        np.testing.assert_allclose(got[:live], want[:live], rtol=1e-11)
    stats, ref = collapse_stats(e, backend=backend), collapse_stats(e, method="svd")  # type: ignore[arg-type]
    for key in ("mean_sv", "sv_position", "effective_rank"):
        assert stats[key] == pytest.approx(ref[key], rel=1e-12, abs=1e-15), key
