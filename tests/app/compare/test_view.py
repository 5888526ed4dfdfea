"""The compare view on a real database (SQLite and PostgreSQL): what a sweep's page shows when
nothing but the sweep is named, and the epoch, step and wall-time axes (app/compare/view.py)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from comparekit import config_of, epoch, sdk_run, set_clock, sweep

from app.compare.query import CompareQuery
from app.compare.view import build_compare, page_data
from app.db import Database


def _level(config: dict[str, object], n: int) -> float:
    """A mean_sv that tells regularizers apart: baseline ~1, SVMax ~3, seeds add a little."""
    base = 3.0 if config["regularizer"] == "svmax" else 1.0
    return base + 0.1 * float(config["seed"]) + 0.01 * n  # type: ignore[arg-type]


def _seed_sweep(database: Database, grid: dict[str, list[object]]) -> tuple[str, list[int]]:
    sweep_id, ids = sweep(database, grid, seeds=[0, 1])
    for run_id in ids:
        config = config_of(database, run_id)
        for n in range(3):
            epoch(database, run_id, n, mean_sv=_level(config, n))
    return sweep_id, ids


def test_build_compare_groups_a_sweep_by_its_swept_keys_without_being_told(database: Database) -> None:
    sweep_id, _ = _seed_sweep(database, {"regularizer": ["none", "svmax"]})
    with database.session(write=False) as session:
        data = build_compare(session=session, query=CompareQuery(sweeps=[sweep_id]))
    assert data.view.group == ["regularizer"]
    assert [(g.label, len(g.run_ids)) for g in data.groups] == [
        ("regularizer=none", 2),
        ("regularizer=svmax", 2),
    ]
    none, svmax = data.bands
    assert none.x == [0, 1, 2] and none.n == [2, 2, 2]
    assert none.mean[0] == pytest.approx(1.05) and svmax.mean[0] == pytest.approx(3.05)
    assert none.std[0] == pytest.approx(0.1 / 2**0.5)
    # nothing numeric was swept: the sweep plot has the regularizer on a categorical x axis
    assert (data.axes.x, data.axes.lines, data.axes.categorical) == ("regularizer", [], True)
    (line,) = data.sweep
    assert line.x == ["none", "svmax"] and line.n == [2, 2]
    assert line.mean == [pytest.approx(1.07), pytest.approx(3.07)]
    url = data.view.url()
    assert "group=regularizer" in url and "x=regularizer" in url and "xaxis=epoch" in url
    chart = page_data(data)
    assert (
        chart["group"] == ["regularizer"] and chart["x_kind"] == "categorical" and chart["xaxis"] == "epoch"
    )
    assert {r["group"] for r in chart["runs"]} == {0, 1}


def test_build_compare_numeric_sweep_puts_it_on_x_with_one_line_per_regularizer(database: Database) -> None:
    sweep_id, _ = _seed_sweep(database, {"regularizer": ["none", "svmax"], "lr": [0.01, 0.1]})
    with database.session(write=False) as session:
        data = build_compare(session=session, query=CompareQuery(sweeps=[sweep_id]))
    assert data.view.group == ["lr", "regularizer"] and len(data.groups) == 4
    assert (data.axes.x, data.axes.lines, data.axes.categorical) == ("lr", ["regularizer"], False)
    assert [line.label for line in data.sweep] == ["regularizer=none", "regularizer=svmax"]
    assert all(line.x == [0.01, 0.1] and line.n == [2, 2] for line in data.sweep)
    assert data.upper_bound == [(0.01, 1.0), (0.1, 1.0)]  # STATS' sv_upper, drawn with mean_sv


def test_build_compare_follows_an_explicit_grouping_and_reports_unknown_keys(database: Database) -> None:
    sweep_id, _ = _seed_sweep(database, {"regularizer": ["none", "svmax"]})
    with database.session(write=False) as session:
        flat = build_compare(session=session, query=CompareQuery(sweeps=[sweep_id], group=[]))
        by_seed = build_compare(session=session, query=CompareQuery(sweeps=[sweep_id], group=["seed"]))
        wrong = build_compare(session=session, query=CompareQuery(sweeps=[sweep_id], group=["nope"], x="zzz"))
    assert [g.label for g in flat.groups] == ["all runs"] and flat.bands[0].n == [4, 4, 4]
    assert "group=-" in flat.view.url()
    assert [g.label for g in by_seed.groups] == ["seed=0", "seed=1"]
    assert by_seed.axes.x == "seed" and not by_seed.axes.categorical
    assert "no run has config key(s) nope" in wrong.problems["group"]
    assert "'zzz'" in wrong.problems["x"] and wrong.axes.x == "nope"
    assert flat.group_choices == ["regularizer", "seed"]


def test_build_compare_wall_time_axis_places_epochs_at_seconds_since_start(database: Database) -> None:
    sweep_id, ids = _seed_sweep(database, {"regularizer": ["none", "svmax"]})
    start = datetime(2030, 1, 1, tzinfo=UTC)
    per_epoch = {run_id: 10.0 * (i + 1) for i, run_id in enumerate(ids)}
    for run_id, seconds in per_epoch.items():
        set_clock(database, run_id, start, seconds_per_epoch=seconds)
    query = CompareQuery(sweeps=[sweep_id], xaxis="time")
    with database.session(write=False) as session:
        data = build_compare(session=session, query=query)
    assert data.curves.xaxis == "time" and data.problems == {}
    first = config_of(database, ids[0])
    assert data.curves.by_run[ids[0]] == {
        10.0: pytest.approx(_level(first, 0)),
        20.0: pytest.approx(_level(first, 1)),
        30.0: pytest.approx(_level(first, 2)),
    }
    for group, band in zip(data.groups, data.bands, strict=True):
        mean_per_epoch = sum(per_epoch[r] for r in group.run_ids) / len(group.run_ids)
        assert band.x == [pytest.approx(mean_per_epoch * (n + 1)) for n in range(3)] and band.n == [2, 2, 2]
    assert "xaxis=time" in data.view.url()


def test_build_compare_step_axis_for_sdk_scalars_and_fallbacks(database: Database) -> None:
    a = sdk_run(database, {"optimizer": "adam"}, {s: 1.0 / (s + 1) for s in range(5)})
    b = sdk_run(database, {"optimizer": "sgd"}, {s: 2.0 / (s + 1) for s in range(0, 10, 2)})
    with database.session(write=False) as session:
        auto = build_compare(session=session, query=CompareQuery(runs=[a, b], stat="loss"))
        asked = build_compare(session=session, query=CompareQuery(runs=[a, b], stat="loss", xaxis="epoch"))
    assert auto.curves.xaxis == "step" and auto.problems == {}
    assert auto.curves.by_run[a] == {s: pytest.approx(1.0 / (s + 1)) for s in range(5)}
    assert [g.label for g in auto.groups] == ["optimizer=adam", "optimizer=sgd"]
    assert auto.bands[1].x == [0, 2, 4, 6, 8]
    assert "loss" in auto.stat_choices and "xaxis=step" in auto.view.url()
    assert asked.curves.xaxis == "step" and "no run has loss by epoch" in asked.problems["xaxis"]
    sweep_id, _ = _seed_sweep(database, {"regularizer": ["none", "svmax"]})
    with database.session(write=False) as session:
        steps = build_compare(session=session, query=CompareQuery(sweeps=[sweep_id], xaxis="step"))
    assert steps.curves.xaxis == "epoch" and "no run has mean_sv by step" in steps.problems["xaxis"]


def test_group_finals_and_sweep_agree_on_each_runs_own_last_epoch_when_a_run_stops_early(
    database: Database,
) -> None:
    sweep_id, ids = sweep(database, {"regularizer": ["none", "svmax"]}, seeds=[0, 1])
    stopped = {ids[0]: 1}  # early stopping: its last epoch is 1, the others reach epoch 3
    for run_id in ids:
        config = config_of(database, run_id)
        for n in range(stopped.get(run_id, 3) + 1):
            epoch(database, run_id, n, mean_sv=_level(config, n))
    with database.session(write=False) as session:
        data = build_compare(session=session, query=CompareQuery(sweeps=[sweep_id]))
    group = next(g for g in data.groups if ids[0] in g.run_ids)
    final = data.finals[data.groups.index(group)]
    values = [_level(config_of(database, r), stopped.get(r, 3)) for r in group.run_ids]
    assert (final.runs, final.n, final.x_min, final.x_max) == (2, 2, 1, 3)
    assert final.mean == pytest.approx(sum(values) / 2)
    # the band's last epoch holds the one run that got there: not what the table reports
    band = data.bands[data.groups.index(group)]
    assert band.x[-1] == 3 and band.n[-1] == 1
    (line,) = data.sweep  # the sweep plot takes the same per-run finals
    at = line.x.index(group.values["regularizer"])
    assert line.n[at] == 2 and line.mean[at] == pytest.approx(final.mean)
    assert line.std[at] == pytest.approx(final.std)
    assert page_data(data)["groups"][0]["final"]["n"] == 2
