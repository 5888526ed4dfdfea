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
    e = torch.tensor(make(kind, b, d))  # the torch route (numpy's equals it: the test below)
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
        core, _ = collapse_core(torch.tensor(make(kind, b, d)))
        assert core.routes == ("gram", "gram"), kind
    for kind in ("rank1", "identical"):
        core, _ = collapse_core(torch.tensor(make(kind, b, d)))
        assert core.routes[0] == "svd", kind  # squaring cannot resolve the zero singular values
        stats = collapse_stats(torch.tensor(make(kind, b, d)))
        assert stats["mean_sv"] == pytest.approx(stats["sv_lower"], rel=1e-9)
        assert stats["sv_position"] == pytest.approx(0.0, abs=1e-9)


@pytest.mark.parametrize("kind", ["random", "relu", "dead", "rank3", "rank1", "identical", "graded"])
@pytest.mark.parametrize(("b", "d"), [(512, 128), (64, 512), (40, 40), (7, 3)])
def test_numpy_route_equals_torch_route(b: int, d: int, kind: str) -> None:
    e = make(kind, b, d)
    (numpy_core, numpy_name), (torch_core, torch_name) = collapse_core(e), collapse_core(torch.tensor(e))
    assert (numpy_name, torch_name) == ("numpy", "torch")
    assert numpy_core.routes == torch_core.routes
    scale = float(np.abs(e).max())
    assert_same(collapse_stats(e), collapse_stats(torch.tensor(e)), scale)
    e32 = e.astype(np.float32)
    assert_same(collapse_stats(e32), collapse_stats(torch.tensor(e32)), scale)


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
        assert_same(stats, collapse_stats(torch.tensor(m)), float(np.abs(m).max()))


def test_importing_stats_does_not_import_torch() -> None:
    code = "import sys, collapsewatch.stats, collapsewatch.stats_core; print('torch' in sys.modules)"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120, check=True
    )
    assert out.stdout.strip() == "False"
