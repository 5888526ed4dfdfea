"""The sweep plot's axes and lines (app/compare/sweep.py)."""

from __future__ import annotations

import math

import pytest

from app.compare.sweep import sweep_axes, sweep_lines


def _grid(**values: list[object]) -> list[dict[str, object]]:
    configs: list[dict[str, object]] = [{}]
    for key, options in values.items():
        configs = [c | {key: v} for c in configs for v in options]
    return configs


def test_sweep_axes_put_the_numeric_key_on_x_and_one_line_per_categorical_key() -> None:
    configs = _grid(regularizer=["none", "svmax"], lr=[0.01, 0.1], seed=[0, 1])
    axes = sweep_axes(configs, ["lr", "regularizer"])
    assert (axes.x, axes.lines, axes.categorical) == ("lr", ["regularizer"], False)


def test_sweep_axes_categorical_x_when_nothing_numeric_was_swept() -> None:
    configs = _grid(regularizer=["none", "svmax"], seed=[0, 1])
    axes = sweep_axes(configs, ["regularizer"])
    assert (axes.x, axes.lines, axes.categorical) == ("regularizer", [], True)
    assert sweep_axes(configs, []).x == ""


def test_sweep_axes_follow_explicit_choices() -> None:
    configs = _grid(regularizer=["none", "svmax"], lr=[0.01, 0.1], batch_size=[16, 64])
    swept = ["batch_size", "lr", "regularizer"]
    assert sweep_axes(configs, swept).x == "batch_size"
    axes = sweep_axes(configs, swept, x="regularizer", lines=["lr", "regularizer"])
    assert (axes.x, axes.lines, axes.categorical) == ("regularizer", ["lr"], True)
    assert sweep_axes(configs, swept, lines=[]).lines == []


def test_sweep_lines_one_line_per_regularizer_with_error_bars_over_seeds() -> None:
    points = [
        (["none"], 64, 1.0),
        (["none"], 64, 3.0),
        (["none"], 16, 2.0),
        (["svmax"], 16, 4.0),
        (["svmax"], 64, 5.0),
        (["svmax"], 64, 7.0),
        (["svmax"], 128, float("nan")),
        (["svmax"], None, 9.0),  # a run without the x key: not on a numeric axis
    ]
    lines = sweep_lines(points, ["regularizer"])
    assert [line.label for line in lines] == ["regularizer=none", "regularizer=svmax"]
    none, svmax = lines
    assert none.x == [16, 64] and none.mean == [2.0, 2.0] and none.n == [1, 2]
    assert none.std[1] == pytest.approx(math.sqrt(2.0))
    assert svmax.x == [16, 64] and svmax.mean == [4.0, 6.0]


def test_sweep_lines_categorical_x_uses_value_labels_in_order() -> None:
    points = [([], "svmax", 3.0), ([], "none", 1.0), ([], "svmax", 5.0), ([], None, 2.0), ([], True, 0.5)]
    (line,) = sweep_lines(points, [], categorical=True)
    assert line.label == "all runs"
    assert line.x == ["none", "null", "svmax", "true"]
    assert line.mean == [1.0, 2.0, 4.0, 0.5] and line.n == [1, 1, 2, 1]


def test_sweep_lines_one_line_per_combination_of_two_keys() -> None:
    points = [(["svmax", 16], 0.1, 1.0), (["svmax", 64], 0.1, 2.0), (["none", 16], 0.1, 3.0)]
    lines = sweep_lines(points, ["regularizer", "batch_size"])
    assert [line.label for line in lines] == [
        "regularizer=none, batch_size=16",
        "regularizer=svmax, batch_size=16",
        "regularizer=svmax, batch_size=64",
    ]
