"""Runs and job submission through the v1 API, on SQLite and PostgreSQL."""

from __future__ import annotations

from apikit import Api


def test_create_run_when_sdk_body_returns_running_attempt_one(api: Api) -> None:
    run = api.sdk_run(name="mine", config={"lr": 0.1}, tags=["a"])
    assert (run["status"], run["attempt"], run["kind"], run["project"]) == ("running", 1, "sdk", "p")
    fetched = api.client.get(f"/api/v1/runs/{run['id']}", headers=api.user).json()
    assert fetched["config"] == {"lr": 0.1} and fetched["tags"] == ["a"] and fetched["name"] == "mine"
    assert [(rid, kind) for rid, kind, _ in api.recorder.published] == [(run["id"], "status")]


def test_get_run_when_unknown_returns_404_naming_the_run(api: Api) -> None:
    response = api.client.get("/api/v1/runs/4242", headers=api.user)
    assert response.status_code == 404 and "4242" in response.json()["message"]


def test_submit_jobs_when_sweep_creates_grid_times_seeds_sharing_sweep_id(api: Api) -> None:
    body = {"project": "p", "spec": {"epochs": 2}, "sweep": {"lr": [0.1, 0.01]}, "seeds": [0, 1, 2]}
    response = api.client.post("/api/v1/jobs", json=body, headers=api.user)
    assert response.status_code == 201
    runs = response.json()
    assert len(runs) == 6 and {r["status"] for r in runs} == {"queued"}
    assert len({r["sweep_id"] for r in runs}) == 1 and runs[0]["sweep_id"]
    assert sorted((r["config"]["lr"], r["config"]["seed"]) for r in runs) == sorted(
        (lr, s) for lr in (0.1, 0.01) for s in (0, 1, 2)
    )
    assert api.recorder.enqueued == [r["id"] for r in runs]


def test_submit_jobs_when_single_spec_has_no_sweep_id_and_defaults(api: Api) -> None:
    run = api.job(spec={"regularizer": "svmax"})
    assert run["sweep_id"] is None and run["config"]["embedding_dim"] == 32
    assert run["attempt"] == 0 and run["max_attempts"] == 3


def test_submit_jobs_when_spec_value_bad_returns_422_naming_field(api: Api) -> None:
    response = api.client.post("/api/v1/jobs", json={"spec": {"epochs": 0}}, headers=api.user)
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "spec", "epochs"]
    assert "body.spec.epochs" in response.json()["message"]
    assert api.client.get("/api/v1/runs", headers=api.user).json() == []


def test_submit_jobs_when_sweep_value_bad_returns_422_naming_sweep_key(api: Api) -> None:
    body = {"spec": {}, "sweep": {"lr": [0.1, -1.0]}}
    response = api.client.post("/api/v1/jobs", json=body, headers=api.user)
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "sweep", "lr"]
    assert api.client.get("/api/v1/runs", headers=api.user).json() == []
    assert api.recorder.enqueued == []


def test_submit_jobs_when_sweep_key_unknown_returns_422_listing_allowed(api: Api) -> None:
    response = api.client.post("/api/v1/jobs", json={"sweep": {"nope": [1]}}, headers=api.user)
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "sweep", "nope"]
    assert "embedding_dim" in response.json()["message"]


def test_submit_jobs_when_spec_key_unknown_returns_422(api: Api) -> None:
    response = api.client.post("/api/v1/jobs", json={"spec": {"lrr": 1}}, headers=api.user)
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "spec", "lrr"]


def test_list_runs_when_filtered_returns_only_matches(api: Api) -> None:
    a = api.sdk_run(project="alpha", tags=["x", "y"])
    b = api.sdk_run(project="beta", tags=["y"])
    jobs = api.client.post(
        "/api/v1/jobs",
        json={"project": "alpha", "sweep": {"lr": [0.1, 0.2]}, "tags": ["x"]},
        headers=api.user,
    ).json()

    def ids(**params: object) -> list[int]:
        response = api.client.get("/api/v1/runs", params=params, headers=api.user)
        assert response.status_code == 200, response.text
        return sorted(r["id"] for r in response.json())

    assert ids(project="alpha") == sorted([a["id"], *(j["id"] for j in jobs)])
    assert ids(tag="y") == sorted([a["id"], b["id"]])
    assert ids(tag="x", kind="job") == sorted(j["id"] for j in jobs)
    assert ids(status="queued") == sorted(j["id"] for j in jobs)
    assert ids(status=["queued", "running"]) == sorted([a["id"], b["id"], *(j["id"] for j in jobs)])
    assert ids(sweep=jobs[0]["sweep_id"]) == sorted(j["id"] for j in jobs)
    assert ids(project="nope") == []


def test_list_runs_when_paged_returns_newest_first_with_total(api: Api) -> None:
    made = [api.sdk_run(name=f"r{i}")["id"] for i in range(5)]
    response = api.client.get("/api/v1/runs", params={"limit": 2, "offset": 1}, headers=api.user)
    assert [r["id"] for r in response.json()] == [made[3], made[2]]
    assert response.headers["x-total-count"] == "5"
    by_name = api.client.get("/api/v1/runs", params={"sort": "name"}, headers=api.user).json()
    assert [r["name"] for r in by_name] == [f"r{i}" for i in range(5)]


def test_list_runs_when_sort_unknown_returns_422(api: Api) -> None:
    response = api.client.get("/api/v1/runs", params={"sort": "password"}, headers=api.user)
    assert response.status_code == 422 and response.json()["detail"][0]["loc"] == ["query", "sort"]
