"""Aggregation behind the compare page (app/compare.py)."""

from __future__ import annotations

import math

import pytest

from app.compare.groups import (
    aligned_epoch,
    config_diff,
    group_runs,
    mean_std,
    mean_std_band,
    numeric_keys,
    sweep_lines,
)


def test_config_diff_marks_only_differing_keys() -> None:
    rows = config_diff([{"lr": 0.1, "seed": 0, "model": "mlp"}, {"lr": 0.1, "seed": 1, "model": "mlp"}])
    assert {r.key: r.differs for r in rows} == {"lr": False, "model": False, "seed": True}
    assert next(r for r in rows if r.key == "seed").values == [0, 1]


def test_config_diff_missing_key_counts_as_difference_and_numbers_compare_by_value() -> None:
    rows = {r.key: r for r in config_diff([{"a": 1, "b": 2}, {"a": 1.0}, {"a": 1, "b": 2}])}
    assert not rows["a"].differs
    assert rows["b"].differs and rows["b"].values == [2, "—", 2]


def test_group_runs_groups_by_keys_in_first_seen_order() -> None:
    runs = [
        (1, {"regularizer": "none", "lr": 0.1, "seed": 0}),
        (2, {"regularizer": "svmax", "lr": 0.1, "seed": 0}),
        (3, {"regularizer": "none", "lr": 0.1, "seed": 1}),
        (4, {"regularizer": "svmax", "lr": 0.1, "seed": 1}),
    ]
    groups = group_runs(runs, ["regularizer"])
    assert [(g.label, g.run_ids) for g in groups] == [
        ("regularizer=none", [1, 3]),
        ("regularizer=svmax", [2, 4]),
    ]
    assert [g.run_ids for g in group_runs(runs, [])] == [[1, 2, 3, 4]]


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


def test_sweep_lines_one_line_per_regularizer_with_error_bars_over_seeds() -> None:
    points = [
        ("none", 64, 1.0),
        ("none", 64, 3.0),
        ("none", 16, 2.0),
        ("svmax", 16, 4.0),
        ("svmax", 64, 5.0),
        ("svmax", 64, 7.0),
        ("svmax", 128, float("nan")),
    ]
    lines = sweep_lines(points, "regularizer")
    assert [line.label for line in lines] == ["regularizer=none", "regularizer=svmax"]
    none, svmax = lines
    assert none.x == [16, 64] and none.mean == [2.0, 2.0] and none.n == [1, 2]
    assert none.std[1] == pytest.approx(math.sqrt(2.0))
    assert svmax.x == [16, 64] and svmax.mean == [4.0, 6.0]


def test_aligned_epoch_defaults_to_newest_epoch_every_run_reached() -> None:
    assert aligned_epoch(None, [9, 4, None, 7]) == 4
    assert aligned_epoch(2, [9, 4]) == 2
    assert aligned_epoch(None, [None]) is None


def test_numeric_keys_lists_differing_numeric_parameters_except_seed() -> None:
    configs = [
        {"lr": 0.1, "batch_size": 32, "seed": 0, "regularizer": "none", "epochs": 5},
        {"lr": 0.01, "batch_size": 64, "seed": 1, "regularizer": "svmax", "epochs": 5},
    ]
    assert numeric_keys(configs) == ["batch_size", "lr"]
