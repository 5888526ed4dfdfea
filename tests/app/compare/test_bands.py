"""Mean ± std bands for the epoch, step and wall-time axes (app/compare/bands.py)."""

from __future__ import annotations

import math

import pytest

from app.compare.bands import Final, binned_band, final_values, mean_std, mean_std_band, timed_band


def test_mean_std_uses_sample_std_and_zero_for_single_value() -> None:
    assert mean_std([2.0, 4.0]) == (3.0, pytest.approx(math.sqrt(2.0)))
    assert mean_std([5.0]) == (5.0, 0.0)
    with pytest.raises(ValueError, match="at least one"):
        mean_std([])


def test_mean_std_band_aligns_epochs_and_counts_runs_per_epoch() -> None:
    band = mean_std_band([{0: 1.0, 1: 2.0, 2: 3.0}, {0: 3.0, 1: None, 2: 5.0}, {0: 2.0}])
    assert band.x == [0, 1, 2]
    assert band.mean == [2.0, 2.0, 4.0]
    assert band.n == [3, 1, 2]
    assert band.std[0] == pytest.approx(1.0)
    assert band.std[1] == 0.0
    assert band.std[2] == pytest.approx(math.sqrt(2.0))


def test_mean_std_band_skips_non_finite_values() -> None:
    band = mean_std_band([{0: float("nan"), 1: 1.0}, {0: float("inf"), 1: 3.0}])
    assert band.x == [1] and band.mean == [2.0]


def test_binned_band_aligns_exactly_while_few_steps() -> None:
    series = [{0: 1.0, 10: 2.0}, {0: 3.0, 10: 4.0}]
    assert binned_band(series, 4) == mean_std_band(series)


def test_binned_band_bins_runs_logged_at_different_steps() -> None:
    # run A logs every step 0..9, run B every third step: 10 distinct steps, 2 bins of width 4.5
    a = {s: float(s) for s in range(10)}
    b = {s: 10.0 + s for s in range(0, 10, 3)}
    band = binned_band([a, b], 2)
    assert band.n == [2, 2]
    # bin 0 = steps 0..4: A's mean 2, B's (steps 0, 3) mean 11.5; bin 1 = steps 5..9: A 7, B (6, 9) 17.5
    assert band.mean == [pytest.approx((2.0 + 11.5) / 2), pytest.approx((7.0 + 17.5) / 2)]
    assert band.std[0] == pytest.approx(math.sqrt(2) * (11.5 - 2.0) / 2)
    # each band point sits at the mean step of the runs' points in the bin
    assert band.x == [pytest.approx((2.0 + 1.5) / 2), pytest.approx((7.0 + 7.5) / 2)]


def test_binned_band_refuses_zero_bins() -> None:
    with pytest.raises(ValueError, match="max_bins"):
        binned_band([{0: 1.0}], 0)


def test_timed_band_aligns_on_epochs_at_the_mean_wall_time() -> None:
    values = [{0: 1.0, 1: 2.0}, {0: 3.0, 1: 4.0, 2: 5.0}]
    clocks = [{0: 10.0, 1: 20.0}, {0: 30.0, 1: 60.0}]  # run 2 has no clock for epoch 2
    band = timed_band(values, clocks)
    assert band.x == [20.0, 40.0]
    assert band.mean == [2.0, 3.0]
    assert band.n == [2, 2]


def test_final_values_take_each_runs_own_last_value_and_count_the_runs_that_have_one() -> None:
    # run 2 stopped early (epoch 1): its final value counts, at its own last epoch
    stopped = final_values([{0: 1.0, 1: 2.0, 2: 3.0}, {0: 5.0, 1: 7.0}, {0: None}])
    assert (stopped.runs, stopped.n, stopped.x_min, stopped.x_max) == (3, 2, 1, 2)
    assert stopped.mean == pytest.approx(5.0) and stopped.std == pytest.approx(math.sqrt(8.0))
    # one run with a value: its value and no std (not a std of 0)
    assert final_values([{0: 1.0, 3: 4.0}, {}]) == Final(2, 1, 4.0, None, 3, 3)
    assert final_values([{}, {1: math.nan}]) == Final(2, 0)
