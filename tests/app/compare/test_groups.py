"""Config diffs and grouping behind the compare page (app/compare/groups.py)."""

from __future__ import annotations

from app.compare.groups import (
    aligned_epoch,
    config_diff,
    default_group_keys,
    format_value,
    group_label,
    group_runs,
    is_numeric_key,
    numeric_keys,
)

SWEEP = [  # regularizer = none, svmax x seeds 0, 1: what POST /jobs stores as configs
    {"regularizer": "none", "lr": 0.05, "seed": 0, "epochs": 5},
    {"regularizer": "svmax", "lr": 0.05, "seed": 0, "epochs": 5},
    {"regularizer": "none", "lr": 0.05, "seed": 1, "epochs": 5},
    {"regularizer": "svmax", "lr": 0.05, "seed": 1, "epochs": 5},
]


def test_config_diff_marks_only_differing_keys() -> None:
    rows = config_diff([{"lr": 0.1, "seed": 0, "model": "mlp"}, {"lr": 0.1, "seed": 1, "model": "mlp"}])
    assert {r.key: r.differs for r in rows} == {"lr": False, "model": False, "seed": True}
    assert next(r for r in rows if r.key == "seed").values == [0, 1]


def test_config_diff_missing_key_counts_as_difference_and_numbers_compare_by_value() -> None:
    rows = {r.key: r for r in config_diff([{"a": 1, "b": 2}, {"a": 1.0}, {"a": 1, "b": 2}])}
    assert not rows["a"].differs
    assert rows["b"].differs and rows["b"].values == [2, "—", 2]


def test_default_group_keys_are_the_swept_keys_without_seed() -> None:
    assert default_group_keys(config_diff(SWEEP)) == ["regularizer"]
    lr_sweep = [c | {"lr": lr} for c in SWEEP for lr in (0.01, 0.1)]
    assert default_group_keys(config_diff(lr_sweep)) == ["lr", "regularizer"]


def test_default_group_keys_empty_when_only_seeds_differ() -> None:
    seeds_only = [c for c in SWEEP if c["regularizer"] == "none"]
    assert default_group_keys(config_diff(seeds_only)) == []
    assert [g.label for g in group_runs(enumerate(seeds_only), [])] == ["all runs"]


def test_group_runs_groups_by_keys_in_first_seen_order() -> None:
    groups = group_runs([(i + 1, c) for i, c in enumerate(SWEEP)], ["regularizer"])
    assert [(g.label, g.run_ids) for g in groups] == [
        ("regularizer=none", [1, 3]),
        ("regularizer=svmax", [2, 4]),
    ]
    assert groups[1].values == {"regularizer": "svmax"}
    assert [g.run_ids for g in group_runs([(i, c) for i, c in enumerate(SWEEP)], [])] == [[0, 1, 2, 3]]


def test_group_runs_by_two_keys_and_a_key_some_runs_lack() -> None:
    runs = [(1, {"a": 1, "b": True}), (2, {"a": 1.0, "b": True}), (3, {"a": 2}), (4, {"a": 2, "b": False})]
    groups = group_runs(runs, ["a", "b"])
    assert [(g.label, g.run_ids) for g in groups] == [
        ("a=1, b=true", [1, 2]),
        ("a=2, b=null", [3]),
        ("a=2, b=false", [4]),
    ]


def test_group_label_names_the_values() -> None:
    assert group_label(["regularizer", "lr"], ["svmax", 0.001]) == "regularizer=svmax, lr=0.001"
    assert group_label([], []) == "all runs"
    assert [format_value(v) for v in (1e-4, 3, None, True, "x")] == ["0.0001", "3", "null", "true", "x"]


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


def test_is_numeric_key_refuses_booleans_strings_and_absent_keys() -> None:
    configs = [{"lr": 0.1, "flag": True, "name": "a"}, {"lr": 1, "flag": False, "name": "b"}, {}]
    assert is_numeric_key(configs, "lr")
    assert not is_numeric_key(configs, "flag")
    assert not is_numeric_key(configs, "name")
    assert not is_numeric_key(configs, "missing")
