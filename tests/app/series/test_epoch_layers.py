"""Per-layer statistics on the epoch record: stored, returned, published, fenced (SQLite and PostgreSQL)."""

from __future__ import annotations

from typing import Any

from apikit import STATS, Api

from app.series import epochs

FC1 = STATS | {"mean_sv": 0.9, "sv_position": 0.8, "dim_std": [0.5, 0.25, 0.125]}


def _epochs(api: Api, run_id: int) -> list[dict[str, Any]]:
    response = api.client.get(f"/api/v1/runs/{run_id}/epochs", headers=api.user)
    assert response.status_code == 200, response.text
    return list(response.json())


def test_put_epoch_with_layers_round_trips_and_publishes_them(api: Api) -> None:
    run = api.sdk_run()
    response = api.put_epoch(run["id"], 1, layers={"fc1": FC1, "embedding": STATS})
    assert response.status_code == 200, response.text
    assert response.json()["layers"] == {"fc1": FC1, "embedding": STATS}
    [stored] = _epochs(api, run["id"])
    assert stored["stats"] == STATS and stored["layers"] == {"fc1": FC1, "embedding": STATS}
    [(_run, _kind, payload)] = [e for e in api.recorder.published if e[1] == "epoch"]
    assert payload["layers"]["fc1"] == FC1  # the SSE epoch event carries them too


def test_put_epoch_without_layers_returns_an_empty_mapping(api: Api) -> None:
    run = api.sdk_run()
    assert api.put_epoch(run["id"], 0).status_code == 200
    [stored] = _epochs(api, run["id"])
    assert stored["layers"] == {} and stored["stats"] == STATS


def test_put_epoch_with_layers_replay_keeps_first_and_newer_attempt_supersedes(api: Api) -> None:
    job = api.job()
    api.claim(job["id"])
    first = api.put_epoch(job["id"], 2, layers={"fc1": FC1}).json()
    replay = api.put_epoch(job["id"], 2, layers={"fc2": STATS})
    assert replay.status_code == 200 and replay.json() == first
    api.expire_lease(job["id"])
    api.claim(job["id"])
    assert api.put_epoch(job["id"], 1, attempt=1, layers={"fc2": STATS}).status_code == 409  # fenced
    assert api.put_epoch(job["id"], 2, attempt=2, layers={"fc2": STATS}).status_code == 200
    [stored] = _epochs(api, job["id"])
    assert stored["attempt"] == 2 and stored["layers"] == {"fc2": STATS}


def test_put_epoch_with_bad_layer_is_refused_whole(api: Api) -> None:
    run = api.sdk_run()
    bad_name = api.put_epoch(run["id"], 0, layers={"no spaces": STATS})
    assert bad_name.status_code == 422 and "layers" in bad_name.text
    bad_stats = api.put_epoch(run["id"], 0, layers={"fc1": STATS | {"mean_sv": "x"}})
    assert bad_stats.status_code == 422 and "mean_sv" in bad_stats.text
    too_many = api.put_epoch(run["id"], 0, layers={f"l{i}": STATS for i in range(65)})
    assert too_many.status_code == 422
    assert _epochs(api, run["id"]) == []  # nothing half-written


def test_layer_curves_reads_one_layers_statistic_per_epoch(api: Api) -> None:
    a, b = api.sdk_run(), api.sdk_run()
    api.put_epoch(a["id"], 1, layers={"fc1": FC1})
    api.put_epoch(a["id"], 2, layers={"fc1": FC1 | {"sv_position": 0.7}})
    api.put_epoch(b["id"], 1)  # no layers: "embedding" falls back to the default stats
    with api.db.session(write=False) as session:
        fc1 = epochs.layer_curves(session=session, run_ids=[a["id"], b["id"]], layer="fc1", key="sv_position")
        emb = epochs.layer_curves(session=session, run_ids=[b["id"]], layer="embedding", key="mean_sv")
        bad = epochs.layer_curves(session=session, run_ids=[a["id"]], layer="fc1", key="metrics")
    assert fc1 == {a["id"]: {1: 0.8, 2: 0.7}}
    assert emb == {b["id"]: {1: STATS["mean_sv"]}}
    assert bad == {}


def test_compare_with_layer_parameter_draws_that_layers_curves(api: Api) -> None:
    from app.compare.view import CompareQuery, build_compare, page_data

    run = api.sdk_run()
    api.put_epoch(run["id"], 1, layers={"fc1": FC1})
    query, problems = CompareQuery.from_params(
        {"runs": [str(run["id"])], "stat": ["mean_sv"], "layer": ["fc1"]}
    )
    assert not problems and query.layer == "fc1" and "layer=fc1" in query.url()
    with api.db.session(write=False) as session:
        layered = build_compare(session=session, query=query)
        default = build_compare(session=session, query=CompareQuery(runs=[run["id"]], stat="mean_sv"))
    assert layered.curves.by_run == {run["id"]: {1: FC1["mean_sv"]}}
    assert default.curves.by_run == {run["id"]: {1: STATS["mean_sv"]}}
    assert layered.layer_choices == ["fc1"] and page_data(layered)["layer"] == "fc1"
