"""The numpy route's per-thread scratch arrays (collapsewatch.stats_core.scratch): reusing them from
call to call changes no result, never aliases what a call returns, never touches the caller's array,
and threads do not share them."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from collapsewatch import stats_core
from collapsewatch.stats import collapse_core, collapse_stats
from tests.collapsewatch.test_stats_routes import close, make

# row route (b <= d'), column route (d' < b), both at once (b = d), and exact collapse on each side
CASES = [
    ("relu", 64, 512),
    ("random", 512, 128),
    ("rank1", 64, 512),
    ("identical", 512, 128),
    ("dead", 96, 96),
    ("graded", 300, 700),
    ("rank3", 512, 32),
]


def test_scratch_is_one_array_per_name_shape_and_thread_and_large_ones_are_fresh() -> None:
    first = stats_core.scratch("test", (8, 4))
    assert stats_core.scratch("test", (8, 4)) is first
    assert stats_core.scratch("test", (4, 8)) is not first
    assert stats_core.scratch("other", (4, 8)) is not stats_core.scratch("test", (4, 8))
    fortran = stats_core.scratch("test", (8, 4), "F")
    assert fortran.flags.f_contiguous and not fortran.flags.c_contiguous
    assert stats_core.scratch("test", (8, 4), "F") is fortran
    assert stats_core.scratch("test", (8, 4)).flags.c_contiguous
    big = (stats_core.SCRATCH_MAX_BYTES // 8 + 1,)
    assert stats_core.scratch("big", big) is not stats_core.scratch("big", big)
    mine = stats_core.scratch("test", (4, 8))
    with ThreadPoolExecutor(1) as pool:
        theirs = pool.submit(stats_core.scratch, "test", (4, 8)).result()
    assert theirs is not mine


def test_interleaved_shapes_and_routes_agree_with_svdvals_and_with_a_cold_first_call() -> None:
    cold = {case: collapse_stats(make(*case)) for case in CASES}
    for _ in range(2):
        for case in reversed(CASES):
            e = make(*case)
            warm, ref = collapse_stats(e), collapse_stats(e, method="svd")
            assert warm == cold[case], case
            assert close(warm["mean_sv"], ref["mean_sv"], 1e-6, 0.0), case
            assert close(warm["sv_position"], ref["sv_position"], 1e-6, 1e-12), case
            assert close(warm["effective_rank"], ref["effective_rank"], 1e-6, 0.0), case


def test_a_later_call_does_not_change_what_an_earlier_call_returned() -> None:
    a, b = make("relu", 64, 512, seed=1), make("relu", 64, 512, seed=2)
    core_a, _ = collapse_core(a)
    kept = [np.array(v, copy=True) for v in (core_a.sv_normed, core_a.sv_raw, core_a.dim_std)]
    collapse_core(b)  # same shape: the same scratch arrays are written again
    for before, after in zip(kept, (core_a.sv_normed, core_a.sv_raw, core_a.dim_std), strict=True):
        np.testing.assert_array_equal(before, after)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_the_callers_array_is_left_as_it_was(dtype: type) -> None:
    for case in (("relu", 64, 512), ("offset", 512, 128), ("dead", 128, 64)):
        e = make(*case).astype(dtype)
        before = e.copy()
        collapse_stats(e)
        np.testing.assert_array_equal(e, before)


def test_threads_computing_at_once_get_the_serial_results() -> None:
    matrices = [make(kind, 128, 256, seed=s) for s in range(3) for kind in ("relu", "random", "rank1")]
    serial = [collapse_stats(m) for m in matrices]
    start = threading.Barrier(3)

    def run(indices: range) -> list[dict]:
        start.wait()
        return [collapse_stats(matrices[i]) for i in indices for _ in range(3)][::3]

    with ThreadPoolExecutor(3) as pool:
        parts = list(pool.map(run, [range(0, 3), range(3, 6), range(6, 9)]))
    assert [stats for part in parts for stats in part] == serial


@pytest.mark.parametrize(
    "case", [("relu", 512, 128), ("dead", 512, 128), ("dead", 64, 512), ("random", 96, 96)]
)
def test_memory_order_and_strides_of_the_input_change_nothing(case: tuple[str, int, int]) -> None:
    e = make(*case)
    want = collapse_stats(np.ascontiguousarray(e))
    wide = np.zeros((e.shape[0] * 2, e.shape[1] + 3))
    wide[::2, 3:] = e
    for variant in (np.asfortranarray(e), wide[::2, 3:]):
        assert collapse_stats(variant) == want
