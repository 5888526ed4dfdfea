"""Series downsampling (pure contract, SQL equals Python) and ``GET /api/v1/series``."""

from __future__ import annotations

import random
from typing import Any

import pytest
from apikit import STATS, Api
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import insert

from app.db import Database
from app.models import Epoch, Project, Run
from app.series.downsample import Point, downsample
from app.series.metrics import store_points
from app.series.query import load_series
from collapsewatch.contract import SeriesPublic

# ---------------------------------------------------------------- the pure contract (Hypothesis)


@st.composite
def series(draw: st.DrawFn) -> tuple[list[int], list[float]]:
    """Sorted x (duplicates allowed), y from a small pool (ties) or any finite float."""
    n = draw(st.integers(0, 120))
    steps = draw(st.lists(st.integers(0, 5), min_size=n, max_size=n))
    xs, x = [], draw(st.integers(0, 10**6))
    for s in steps:
        x += s
        xs.append(x)
    pool = st.sampled_from([-1.0, 0.0, 0.5, 2.0]) if draw(st.booleans()) else st.floats(-1e6, 1e6)
    ys = draw(st.lists(pool, min_size=n, max_size=n))
    return xs, ys


@settings(max_examples=300, deadline=None)
@given(data=series(), max_points=st.integers(2, 40))
def test_downsample_when_any_series_keeps_first_last_min_max_and_bounds(
    data: tuple[list[int], list[float]], max_points: int
) -> None:
    xs, ys = data
    out = downsample(xs, ys, max_points)
    pairs = list(zip(xs, ys, strict=True))
    if len(xs) <= max_points:
        assert out == [Point(x, y, y, y) for x, y in pairs]
        return
    assert len(out) <= max(max_points, 4)
    if max_points >= 4:
        assert len(out) <= max_points
    got = [(p.x, p.y) for p in out]
    assert got[0] == pairs[0] and got[-1] == pairs[-1]
    assert min(p.y for p in out) == min(ys) and max(p.y for p in out) == max(ys)
    assert min(p.y_min for p in out) == min(ys) and max(p.y_max for p in out) == max(ys)
    assert all(pair in pairs for pair in got)
    assert all(p.y_min <= p.y <= p.y_max for p in out)
    assert [p.x for p in out] == sorted(p.x for p in out)


@pytest.mark.parametrize("max_points", [2, 3, 4])
def test_downsample_when_max_points_below_four_keeps_all_four_required_points(max_points: int) -> None:
    xs = list(range(10))
    ys = [5.0, 3.0, 9.0, 4.0, 4.0, -2.0, 4.0, 4.0, 4.0, 6.0]
    out = downsample(xs, ys, max_points)
    assert {(0, 5.0), (9, 6.0), (5, -2.0), (2, 9.0)} <= {(p.x, p.y) for p in out}
    assert len(out) <= 4


def test_downsample_when_empty_or_single_point_returns_it_unchanged() -> None:
    assert downsample([], [], 2) == []
    assert downsample([7], [1.5], 2) == [Point(7, 1.5, 1.5, 1.5)]


def test_downsample_when_constant_series_returns_constant_envelopes() -> None:
    out = downsample(list(range(100)), [1.0] * 100, 10)
    assert 2 <= len(out) <= 10 and {(p.y, p.y_min, p.y_max) for p in out} == {(1.0, 1.0, 1.0)}
    assert out[0].x == 0 and out[-1].x == 99


def test_downsample_when_envelope_covers_bucket_extremes() -> None:
    ys = [float((i * 37) % 101) for i in range(1000)]
    out = downsample(list(range(1000)), ys, 50)
    width = 1000 // 47 + 1
    for p in out:
        bucket = ys[(p.x // width) * width : (p.x // width + 1) * width]
        assert (p.y_min, p.y_max) == (min(bucket), max(bucket))


def test_downsample_when_runs_share_range_buckets_align() -> None:
    a = downsample(list(range(0, 1000)), [float(i % 7) for i in range(1000)], 20, lo=0, hi=1999)
    b = downsample(list(range(0, 2000)), [float(i % 5) for i in range(2000)], 20, lo=0, hi=1999)
    width = 2000 // 17 + 1  # ceil(2000 / 17)
    assert {p.x // width for p in a} <= {p.x // width for p in b}


def test_downsample_when_bad_arguments_raises_naming_them() -> None:
    with pytest.raises(ValueError, match="max_points"):
        downsample([1, 2], [1.0, 2.0], 1)
    with pytest.raises(ValueError, match="length"):
        downsample([1, 2], [1.0], 2)
    with pytest.raises(ValueError, match="cover"):
        downsample(list(range(10)), [0.0] * 10, 2, lo=5)


# ---------------------------------------------------------------- SQL equals the pure contract


def _seed_runs(database: Database, count: int) -> list[int]:
    with database.transaction() as session:
        project = Project(name="series")
        session.add(project)
        session.flush()
        runs = [Run(project_id=project.id, kind="sdk", status="running") for _ in range(count)]
        session.add_all(runs)
        session.flush()
        return [r.id for r in runs]


def _metric_data(rng: random.Random, n: int, start: int) -> list[tuple[int, float]]:
    steps = sorted(rng.sample(range(start, start + 3 * n), n))
    return [(s, rng.choice([0.0, 1.0, rng.gauss(0, 1)])) for s in steps]


@pytest.mark.parametrize("max_points", [2, 5, 64, 1000])
def test_load_series_when_metrics_table_equals_python_downsample(database: Database, max_points: int) -> None:
    rng = random.Random(max_points)
    run_ids = _seed_runs(database, 3)
    data = {
        r: _metric_data(rng, n, start)
        for r, n, start in zip(run_ids, (700, 40, 1), (0, 500, 90), strict=True)
    }
    points: dict[int, dict[tuple[str, int], float | None]] = {
        r: {("loss", x): y for x, y in data[r]} for r in run_ids
    }
    points[run_ids[0]] |= {("loss", 2500): None, ("other", 3): 99.0}
    with database.transaction() as session:
        for r in run_ids:
            store_points(session=session, run_id=r, points=points[r], attempt=1)
    with database.session(write=False) as session:
        got = load_series(session=session, run_ids=run_ids, key="loss", max_points=max_points)
    lo = min(d[0][0] for d in data.values())
    hi = max(2500, *(d[-1][0] for d in data.values()))  # the range includes null-valued steps
    for result in got:
        xs, ys = [x for x, _ in data[result.run]], [y for _, y in data[result.run]]
        assert result.source == "metric" and result.total == len(xs)
        assert result.points == downsample(xs, ys, max_points, lo=lo, hi=hi)


def test_load_series_when_epoch_column_and_json_metric_equal_python(database: Database) -> None:
    rng = random.Random(3)
    run_ids = _seed_runs(database, 2)
    values = {r: [(e, rng.random(), rng.random()) for e in range(0, 300, 1 + r % 2)] for r in run_ids}
    with database.transaction() as session:
        session.execute(
            insert(Epoch),
            [
                {"run_id": r, "epoch": e, "attempt": 1, "mean_sv": a, "metrics": {"val_acc": b, "lr": None}}
                for r in run_ids
                for e, a, b in values[r]
            ],
        )
    with database.session(write=False) as session:
        by_column = load_series(session=session, run_ids=run_ids, key="mean_sv", max_points=30)
        by_json = load_series(session=session, run_ids=run_ids, key="val_acc", max_points=30)
        nulls = load_series(session=session, run_ids=run_ids, key="lr", max_points=30)
    for column, json_, null in zip(by_column, by_json, nulls, strict=True):
        xs = [e for e, _, _ in values[column.run]]
        assert column.points == downsample(xs, [a for _, a, _ in values[column.run]], 30, lo=0, hi=299)
        assert json_.points == downsample(xs, [b for _, _, b in values[json_.run]], 30, lo=0, hi=299)
        assert column.source == json_.source == "epoch" and null.points == [] and null.total == 0


# ---------------------------------------------------------------- the route


def _series(api: Api, runs: list[int], key: str, **params: Any) -> Any:
    return api.client.get("/api/v1/series", params={"run": runs, "key": key, **params}, headers=api.user)


def test_get_series_when_sources_differ_looks_up_stat_sdk_scalar_then_epoch_metric(api: Api) -> None:
    sdk, job_like = api.sdk_run()["id"], api.sdk_run()["id"]
    for run in (sdk, job_like):
        for epoch in range(3):
            metrics = {"val_acc": 0.1 * epoch, "loss": 10.0 + epoch}
            assert api.put_epoch(run, epoch, metrics=metrics).status_code == 200
    points = [{"key": "loss", "step": s, "value": 1.0 / (s + 1)} for s in range(5)]
    body = {"attempt": 1, "points": points}
    response = api.client.post(f"/api/v1/runs/{sdk}/metrics", json=body, headers=api.user)
    assert response.status_code == 200, response.text
    stat = _series(api, [sdk, job_like], "mean_sv").json()
    assert [SeriesPublic.model_validate(s).run for s in stat] == [sdk, job_like]
    assert [s["source"] for s in stat] == ["epoch", "epoch"]
    assert stat[0]["points"][0] == {"x": 0, "y": 0.5, "y_min": 0.5, "y_max": 0.5}
    loss = _series(api, [sdk, job_like], "loss").json()
    assert [(s["run"], s["source"], s["total"]) for s in loss] == [(sdk, "metric", 5), (job_like, "epoch", 3)]
    assert [p["y"] for p in loss[1]["points"]] == [10.0, 11.0, 12.0]
    forced = _series(api, [sdk], "loss", source="epoch").json()
    assert forced[0]["source"] == "epoch" and forced[0]["total"] == 3


def test_get_series_when_downsampled_returns_at_most_max_points_with_extremes(api: Api) -> None:
    run = api.sdk_run()["id"]
    values = [((s * 7919) % 1000) / 10 for s in range(2000)]
    for start in (0, 1000):
        batch = [{"key": "acc", "step": s, "value": values[s]} for s in range(start, start + 1000)]
        body = {"attempt": 1, "points": batch}
        assert api.client.post(f"/api/v1/runs/{run}/metrics", json=body, headers=api.user).status_code == 200
    [series_] = _series(api, [run], "acc", max_points=100).json()
    assert series_["total"] == 2000 and 2 <= len(series_["points"]) <= 100
    ys = [p["y"] for p in series_["points"]]
    assert min(ys) == min(values) and max(ys) == max(values)
    assert (series_["points"][0]["x"], series_["points"][-1]["x"]) == (0, 1999)


def test_get_series_when_run_unknown_returns_404_naming_it(api: Api) -> None:
    run = api.sdk_run()["id"]
    response = _series(api, [run, 9999, 8888], "mean_sv")
    assert response.status_code == 404
    assert "9999" in response.json()["message"] and "8888" in response.json()["message"]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"run": list(range(1, 52)), "key": "mean_sv"}, "run"),
        ({"run": [1], "key": "mean_sv", "max_points": 1}, "max_points"),
        ({"run": [1], "key": "mean_sv", "max_points": 10001}, "max_points"),
        ({"run": [1], "key": "bad key!"}, "key"),
        ({"run": [1], "key": "mean_sv", "source": "disk"}, "source"),
        ({"key": "mean_sv"}, "run"),
        ({"run": [0], "key": "mean_sv"}, "run"),
    ],
)
def test_get_series_when_query_bad_returns_422_naming_field(
    api: Api, params: dict[str, Any], field: str
) -> None:
    response = api.client.get("/api/v1/series", params=params, headers=api.user)
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"][:2] == ["query", field]


def test_get_series_when_unauthenticated_returns_401(api: Api) -> None:
    assert api.client.get("/api/v1/series", params={"run": [1], "key": "mean_sv"}).status_code == 401


def test_get_series_when_epochs_streamed_matches_stored_stats(api: Api) -> None:
    run = api.sdk_run()["id"]
    for epoch in range(4):
        assert api.put_epoch(run, epoch, stats=STATS | {"sv_position": epoch / 10}).status_code == 200
    [result] = _series(api, [run], "sv_position").json()
    assert [(p["x"], p["y"]) for p in result["points"]] == [(e, e / 10) for e in range(4)]


def test_gc_paused_when_nested_restores_the_collector_state() -> None:
    import gc

    from app.series.query import gc_paused

    assert gc.isenabled()
    with gc_paused():
        assert not gc.isenabled()
        with gc_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()
    assert gc.isenabled()


def test_get_series_when_repeated_after_writes_reflects_every_write(api: Api) -> None:
    """The rendered-body cache is keyed on the runs' updated_at, which every write bumps."""
    run = api.sdk_run()["id"]

    def post(step: int) -> None:
        body = {"attempt": 1, "points": [{"key": "loss", "step": step, "value": float(step)}]}
        assert api.client.post(f"/api/v1/runs/{run}/metrics", json=body, headers=api.user).status_code == 200

    post(0)
    assert _series(api, [run], "loss").json()[0]["total"] == 1
    assert _series(api, [run], "loss").json()[0]["total"] == 1  # served again (cached)
    post(1)
    assert [p["y"] for p in _series(api, [run], "loss").json()[0]["points"]] == [0.0, 1.0]
    assert api.put_epoch(run, 0).status_code == 200
    assert _series(api, [run], "mean_sv").json()[0]["total"] == 1
    assert api.put_epoch(run, 1, stats=STATS | {"mean_sv": 0.75}).status_code == 200
    assert [p["y"] for p in _series(api, [run], "mean_sv").json()[0]["points"]] == [0.5, 0.75]


def test_series_cache_when_version_changes_or_full_misses_and_evicts() -> None:
    from app.series.cache import SeriesCache

    cache = SeriesCache(max_entries=2, max_bytes=10)
    cache.put("a", ((1, "t1"),), "AAAA")
    assert cache.get("a", ((1, "t1"),)) == "AAAA" and cache.get("a", ((1, "t2"),)) is None
    cache.put("b", ((2, "t"),), "BBBB")
    cache.get("a", ((1, "t1"),))  # a is now the most recent
    cache.put("c", ((3, "t"),), "CCCC")  # evicts b (least recently used) by count and size
    assert cache.get("b", ((2, "t"),)) is None and len(cache) == 2
    cache.put("d", ((4, "t"),), "X" * 11)  # larger than the whole cache: not kept
    assert cache.get("d", ((4, "t"),)) is None
