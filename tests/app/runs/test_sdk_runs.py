"""SDK runs on the server: idempotent create by client_id, provenance, the lease, crashed, resume."""

from __future__ import annotations

import threading
import uuid
from typing import Any

from apikit import Api
from sqlalchemy import func, select

from app.db import Database
from app.jobs.reaper import reap_expired
from app.models import Run
from app.runs import submit
from app.series.run_view import provenance_view
from collapsewatch.contract import RunCreate

PROVENANCE = {
    "git": {"commit": "0123abcd" * 5, "dirty": True, "branch": "main"},
    "command": "python train.py --lr 0.1",
    "python": "3.11.7",
    "host": "gpu-7",
    "packages": {"numpy": "2.4.6", "torch": "2.13.0"},
}


def create(api: Api, **body: Any) -> Any:
    return api.client.post("/api/v1/runs", json={"project": "p", **body}, headers=api.user)


def crash(api: Api, run_id: int) -> None:
    """The run's process died: its lease ran out and the reaper found it."""
    api.expire_lease(run_id)
    with api.db.transaction() as session:
        assert reap_expired(session=session).reaped == {run_id: "crashed"}


def test_create_sdk_run_with_a_repeated_client_id_returns_the_same_run_with_200(api: Api) -> None:
    client_id = uuid.uuid4().hex
    first = create(api, client_id=client_id, config={"lr": 0.1})
    again = create(api, client_id=client_id, config={"lr": 0.1})
    elsewhere = create(api, client_id=client_id, project="q")
    assert (first.status_code, again.status_code, elsewhere.status_code) == (201, 200, 201)
    assert again.json()["id"] == first.json()["id"] != elsewhere.json()["id"]
    statuses = [
        p for (run, kind, p) in api.recorder.published if run == first.json()["id"] and kind == "status"
    ]
    assert len(statuses) == 1  # the repeat published nothing


def test_create_sdk_run_holds_a_lease_and_says_how_long(api: Api) -> None:
    run = create(api).json()
    assert run["status"] == "running" and run["lease_until"] is not None
    assert run["lease_seconds"] == 60


def test_create_sdk_run_stores_provenance_and_returns_it_for_one_run(api: Api) -> None:
    run_id = create(api, provenance=PROVENANCE).json()["id"]
    got = api.client.get(f"/api/v1/runs/{run_id}", headers=api.user).json()
    assert got["provenance"] == PROVENANCE
    (listed,) = api.client.get("/api/v1/runs", headers=api.user).json()
    assert listed["id"] == run_id and listed["provenance"] is None  # lists stay small


def test_create_sdk_run_with_a_bad_client_id_names_the_field(api: Api) -> None:
    response = create(api, client_id="no spaces/allowed")
    assert response.status_code == 422 and "client_id" in response.text


def test_create_sdk_run_when_threads_race_with_one_client_id_makes_one_run(database: Database) -> None:
    client_id = uuid.uuid4().hex
    ids: list[int] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def work() -> None:
        barrier.wait()
        try:
            with database.transaction() as session:
                run, _ = submit.create_sdk_run(
                    session=session, data=RunCreate(project="p", client_id=client_id), owner_id=None
                )
                ids.append(run.id)
        except BaseException as exc:  # asserted below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == [] and len(set(ids)) == 1 and len(ids) == 4
    with database.session(write=False) as session:
        assert session.scalar(select(func.count()).select_from(Run)) == 1


def test_heartbeat_of_a_crashed_sdk_run_brings_it_back_and_publishes_it(api: Api) -> None:
    run_id = create(api).json()["id"]
    crash(api, run_id)
    assert api.client.get(f"/api/v1/runs/{run_id}", headers=api.user).json()["status"] == "crashed"
    beat = api.client.post(f"/api/v1/runs/{run_id}/heartbeat", json={"attempt": 1}, headers=api.user)
    assert beat.status_code == 200, beat.text
    assert api.client.get(f"/api/v1/runs/{run_id}", headers=api.user).json()["status"] == "running"
    assert ("status", "running") in [
        (kind, p["status"]) for run, kind, p in api.recorder.published if run == run_id
    ]


def test_resume_crashed_sdk_run_continues_as_a_new_attempt_and_fences_the_old(api: Api) -> None:
    run_id = create(api).json()["id"]
    assert api.put_epoch(run_id, 1).status_code == 200
    crash(api, run_id)
    assert api.put_epoch(run_id, 2).status_code == 409  # crashed: no writes until it is resumed
    resumed = api.client.post(f"/api/v1/runs/{run_id}/resume", headers=api.user)
    assert resumed.status_code == 200, resumed.text
    body = resumed.json()
    assert (body["status"], body["attempt"], body["last_epoch"], body["lease_seconds"]) == (
        "running",
        2,
        1,
        60,
    )
    assert api.put_epoch(run_id, 2, attempt=1).status_code == 409  # the old process is fenced out
    assert api.put_epoch(run_id, 2, attempt=2).status_code == 200
    epochs = api.client.get(f"/api/v1/runs/{run_id}/epochs", headers=api.user).json()
    assert [(e["epoch"], e["attempt"]) for e in epochs] == [(1, 1), (2, 2)]


def test_resume_a_job_is_refused_with_409(api: Api) -> None:
    job = api.job(spec={"epochs": 1})
    response = api.client.post(f"/api/v1/runs/{job['id']}/resume", headers=api.user)
    assert response.status_code == 409 and "only SDK runs are resumed" in response.text


def test_list_runs_filters_crashed(api: Api) -> None:
    crashed, alive = create(api).json()["id"], create(api).json()["id"]
    crash(api, crashed)
    listed = api.client.get("/api/v1/runs", params={"status": "crashed"}, headers=api.user).json()
    assert [run["id"] for run in listed] == [crashed] and alive != crashed


def test_update_config_merges_keys_into_an_sdk_run_and_refuses_a_job(api: Api) -> None:
    run = create(api, config={"lr": 0.1, "bs": 8}).json()
    path = f"/api/v1/runs/{run['id']}/config"
    for _ in range(2):  # idempotent
        response = api.client.post(
            path, json={"attempt": 1, "config": {"bs": 16, "opt": "sgd"}}, headers=api.user
        )
        assert response.status_code == 200, response.text
    assert response.json()["config"] == {"lr": 0.1, "bs": 16, "opt": "sgd"}
    stale = api.client.post(path, json={"attempt": 2, "config": {"x": 1}}, headers=api.user)
    job = api.job(spec={"epochs": 1})
    assert api.claim(job["id"]).status_code == 200
    refused = api.client.post(
        f"/api/v1/runs/{job['id']}/config", json={"attempt": 1, "config": {"lr": 9}}, headers=api.worker
    )
    assert stale.status_code == 409 and refused.status_code == 409 and "spec" in refused.text


def test_provenance_view_lists_what_was_recorded() -> None:
    view = provenance_view(PROVENANCE)
    assert view is not None
    rows = dict(view["rows"])
    assert rows["git commit"] == f"{'0123abcd' * 5} (dirty: uncommitted changes)"
    assert rows["command"] == "python train.py --lr 0.1" and rows["host"] == "gpu-7"
    assert view["packages"] == [("numpy", "2.4.6"), ("torch", "2.13.0")]
    assert (
        dict(provenance_view({"git": None, "python": "3.11"})["rows"])["git commit"] == "not a git checkout"
    )
    assert provenance_view(None) is None
