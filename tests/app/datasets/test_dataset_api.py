"""Datasets through the JSON API, on SQLite and PostgreSQL: uploads checked before they are stored,
roles as for runs, jobs naming a dataset of their project (never a path), and the worker's download
for the run it holds."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import teamkit
from datasetkit import npz_bytes, pickled_npz, sha256
from fastapi.testclient import TestClient
from teamkit import Team

from app.main import create_app
from app.settings import Settings

HOSTILE_PATHS = ["/etc/passwd", "~/.ssh/id_rsa", "../../etc/shadow", "/no/such/file.npz"]
NPZ = {"dataset": "npz", "epochs": 1}


def upload(team: Team, caller: str, data: bytes, *, project: str = "team", name: str = "d") -> Any:
    headers = team.headers(caller) | {"Content-Type": "application/octet-stream"}
    params = {"project": project, "name": name}
    return team.client.post("/api/v1/datasets", params=params, content=data, headers=headers)


def uploaded(team: Team, caller: str = "editor", project: str = "team", **kw: Any) -> dict[str, Any]:
    response = upload(team, caller, npz_bytes(**kw), project=project)
    assert response.status_code == 201, response.text
    return dict(response.json())


def stored_files(settings: Settings) -> list[Path]:
    root = settings.artifact_dir / "datasets"
    return sorted(root.iterdir()) if root.exists() else []


def submit(
    team: Team, spec: dict[str, Any], *, project: str = "team", caller: str = "editor", **body: Any
) -> Any:
    return team.call(caller, "POST", "/api/v1/jobs", json={"project": project, "spec": spec, **body})


def claimed_job(team: Team, dataset_id: int) -> int:
    response = submit(team, NPZ | {"dataset_id": dataset_id})
    assert response.status_code == 201, response.text
    run_id = int(response.json()[0]["id"])
    claim = team.call("worker_team", "POST", f"/api/v1/runs/{run_id}/claim", json={})
    assert claim.status_code == 200, claim.text
    return run_id


def same_words(first: Any, second: Any, first_id: int, second_id: int) -> bool:
    """Two refusals that differ only in the dataset id they name."""
    a = first.json()["message"].replace(f"dataset {first_id}", "dataset N")
    b = second.json()["message"].replace(f"dataset {second_id}", "dataset N")
    return bool(a == b)


def content(team: Team, caller: str, dataset_id: int, **params: Any) -> Any:
    return team.call(caller, "GET", f"/api/v1/datasets/{dataset_id}/content", params=params)


def test_upload_dataset_stores_it_under_a_generated_name_with_its_hash(
    team: Team, settings: Settings
) -> None:
    data = npz_bytes(rows=40, features=6)
    response = upload(team, "editor", data, name="../../etc/cron.d/evil")
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["sha256"] == sha256(data) and body["size_bytes"] == len(data)
    assert body | {"id": 0, "created_at": ""} == body | {
        "id": 0, "created_at": "", "project": "team", "kind": "upload", "reference": None, "rows": 40,
        "x_shape": [6], "x_dtype": "float32", "classes": 4, "name": "../../etc/cron.d/evil",
    }  # fmt: skip
    [stored] = stored_files(settings)
    assert re.fullmatch(r"[0-9a-f]{32}\.npz", stored.name) and stored.read_bytes() == data
    listed = team.call("viewer", "GET", "/api/v1/datasets", params={"project": "team"})
    assert listed.status_code == 200 and [d["id"] for d in listed.json()] == [body["id"]]
    one = team.call("viewer", "GET", f"/api/v1/datasets/{body['id']}")
    assert one.status_code == 200 and one.json() == body


@pytest.mark.parametrize(
    ("data", "field", "words"),
    [
        (b"\x80\x04not a zip", "file", "not an .npz archive"),
        (pickled_npz(), "y", "Python objects (a pickle)"),
        (npz_bytes(x=np.zeros((40, 6), dtype=np.int32)), "x", "float array"),
        (npz_bytes(y=np.zeros((40, 3), dtype=np.int64)), "y", "1-D integer array"),
    ],
    ids=["not-npz", "pickle-inside", "int-x", "2d-y"],
)
def test_upload_dataset_refuses_bad_file_naming_the_field_and_stores_nothing(
    team: Team, settings: Settings, data: bytes, field: str, words: str
) -> None:
    response = upload(team, "editor", data)
    assert response.status_code == 422, response.text
    [item] = response.json()["detail"]
    assert item["loc"] == ["body", field] and words in item["msg"]
    assert response.json()["message"].startswith(f"{field}: ")
    assert stored_files(settings) == []
    assert team.call("editor", "GET", "/api/v1/datasets", params={"project": "team"}).json() == []


def test_upload_dataset_over_the_size_limit_is_413_declared_or_streamed(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    small = settings.model_copy(update={"max_dataset_bytes": 4096})
    monkeypatch.setattr(teamkit, "hash_password", lambda password: "unused")
    app = create_app(small)
    with TestClient(app) as client:
        team = teamkit.build_team(client, app.state.db, small.admin_email)
        data = npz_bytes(rows=400, features=8)
        assert len(data) > 4096
        declared = upload(team, "editor", data)
        assert declared.status_code == 413 and "MAX_DATASET_BYTES" in declared.json()["message"]

        def chunks() -> Any:  # no Content-Length: counted while it streams
            for start in range(0, len(data), 1000):
                yield data[start : start + 1000]

        streamed = team.call(
            "editor", "POST", "/api/v1/datasets", params={"project": "team", "name": "big"}, content=chunks()
        )
        # counted while it streams: the framework's body limit (set to MAX_DATASET_BYTES for the upload
        # routes) or the upload's own count, whichever sees the excess first; either names the limit
        assert streamed.status_code == 413 and "larger than" in streamed.json()["message"]
        assert stored_files(small) == []
        assert upload(team, "editor", npz_bytes(rows=8, features=2)).status_code == 201


def test_dataset_roles_viewers_list_editors_upload_outsiders_see_nothing(team: Team) -> None:
    dataset = uploaded(team)
    assert upload(team, "viewer", npz_bytes()).status_code == 403
    for caller in ("outsider", "worker_team"):
        assert upload(team, caller, npz_bytes()).status_code == (404 if caller == "outsider" else 403)
    missing = team.call("outsider", "GET", f"/api/v1/datasets/{dataset['id']}")
    nowhere = team.call("outsider", "GET", "/api/v1/datasets/999999")
    assert missing.status_code == nowhere.status_code == 404
    assert same_words(missing, nowhere, dataset["id"], 999_999)
    assert team.call("outsider", "GET", "/api/v1/datasets", params={"project": "team"}).status_code == 404
    assert team.call("worker_team", "GET", "/api/v1/datasets", params={"project": "team"}).status_code == 403
    assert upload(team, "editor", npz_bytes(), project="no-such-project").status_code == 404
    blank = upload(team, "editor", npz_bytes(), name="  \t ")
    assert blank.status_code == 422 and blank.json()["detail"][0]["loc"] == ["query", "name"]


def test_register_reference_takes_root_relative_paths_only(team: Team) -> None:
    sha = "ab" * 32
    body = {
        "project": "team",
        "name": "imagenet train",
        "reference": "imagenet/train/part-1.npz",
        "sha256": sha,
    }
    created = team.call("admin", "POST", "/api/v1/dataset-references", json=body)
    assert created.status_code == 201, created.text
    assert (
        created.json()["kind"] == "reference" and created.json()["reference"] == "imagenet/train/part-1.npz"
    )
    assert team.call("viewer", "POST", "/api/v1/dataset-references", json=body).status_code == 403
    for caller in ("editor", "owner"):  # data roots are shared by every project on a worker: admins only
        refused = team.call(caller, "POST", "/api/v1/dataset-references", json=body)
        assert refused.status_code == 403 and "needs an admin" in refused.json()["message"], caller
    bad = [
        "/etc/passwd", "../../etc/shadow", "imagenet/../../etc/shadow.npz", "imagenet//x.npz",
        "imagenet/./x.npz", "imagenet/x.txt", "x.npz", "imagenet\\..\\x.npz", "~/.ssh/id_rsa", "imagenet/",
    ]  # fmt: skip
    for reference in bad:
        refused = team.call(
            "admin", "POST", "/api/v1/dataset-references", json=body | {"reference": reference}
        )
        assert refused.status_code == 422, (reference, refused.text)
        assert refused.json()["detail"][0]["loc"] == ["body", "reference"], reference
    short = team.call("admin", "POST", "/api/v1/dataset-references", json=body | {"sha256": "abc"})
    assert short.status_code == 422 and short.json()["detail"][0]["loc"] == ["body", "sha256"]


@pytest.mark.parametrize("where", ["spec", "sweep"])
def test_submit_job_refuses_data_path_the_same_whether_or_not_the_file_exists(team: Team, where: str) -> None:
    messages = set()
    for path in HOSTILE_PATHS:
        if where == "spec":
            response = submit(team, {"dataset": "npz", "data_path": path})
        else:
            response = submit(team, {"dataset": "npz"}, sweep={"data_path": [path]})
        assert response.status_code == 422, response.text
        [item] = response.json()["detail"]
        assert item["loc"][-1] == "data_path"
        assert "dataset_id" in item["msg"] and "POST /api/v1/datasets" in item["msg"]
        messages.add(item["msg"])
    assert len(messages) == 1  # /etc/passwd (exists) and /no/such/file.npz (does not) read alike
    runs = team.call("admin", "GET", "/api/v1/runs", params={"project": "team"})
    assert runs.status_code == 200 and runs.json() == []  # nothing was queued


def test_submit_npz_job_needs_a_dataset_of_its_own_project(team: Team) -> None:
    ours = uploaded(team)
    theirs = uploaded(team, caller="outsider", project="other")
    without = submit(team, {"dataset": "npz"})
    assert without.status_code == 422 and without.json()["detail"][0]["loc"] == ["body", "spec", "dataset_id"]
    elsewhere = submit(team, NPZ | {"dataset_id": theirs["id"]}, caller="admin")
    nowhere = submit(team, NPZ | {"dataset_id": 999_999}, caller="admin")
    assert elsewhere.status_code == nowhere.status_code == 404
    assert same_words(elsewhere, nowhere, theirs["id"], 999_999)
    assert "spec.dataset_id" in nowhere.json()["message"]
    swept = submit(team, NPZ | {"dataset_id": ours["id"]}, sweep={"dataset_id": [ours["id"], theirs["id"]]})
    assert swept.status_code == 404
    created = submit(team, NPZ | {"dataset_id": ours["id"]})
    assert created.status_code == 201 and created.json()[0]["config"]["dataset_id"] == ours["id"]
    assert "data_path" not in created.json()[0]["config"]
    digits = submit(team, {"dataset": "digits", "dataset_id": ours["id"]})
    assert digits.status_code == 422 and "only allowed when dataset is 'npz'" in digits.text


def test_worker_downloads_a_dataset_only_for_the_run_it_holds(team: Team) -> None:
    dataset = uploaded(team, rows=24)
    other = uploaded(team, seed=1)
    queued = submit(team, NPZ | {"dataset_id": dataset["id"]}).json()[0]["id"]
    early = content(team, "worker_team", dataset["id"], run=queued, attempt=1)
    assert early.status_code == 409 and "claimed" in early.json()["message"]
    run_id = claimed_job(team, dataset["id"])
    got = content(team, "worker_team", dataset["id"], run=run_id, attempt=1)
    assert got.status_code == 200 and sha256(got.content) == dataset["sha256"]
    assert got.headers["x-dataset-sha256"] == dataset["sha256"]
    info = team.call(
        "worker_team", "GET", f"/api/v1/datasets/{dataset['id']}", params={"run": run_id, "attempt": 1}
    )
    assert info.status_code == 200 and info.json()["sha256"] == dataset["sha256"]
    assert content(team, "worker_team", dataset["id"], run=run_id, attempt=2).status_code == 409
    assert content(team, "worker_team", dataset["id"]).status_code == 403  # no run named
    assert content(team, "editor", dataset["id"], run=run_id, attempt=1).status_code == 403
    assert content(team, "worker_other", dataset["id"], run=run_id, attempt=1).status_code == 404
    not_its = content(team, "worker_team", other["id"], run=run_id, attempt=1)
    missing = content(team, "worker_team", 999_999, run=run_id, attempt=1)
    assert not_its.status_code == missing.status_code == 404
    assert same_words(not_its, missing, other["id"], 999_999)
    done = team.call(
        "worker_team", "POST", f"/api/v1/runs/{run_id}/finish", json={"attempt": 1, "status": "failed"}
    )
    assert done.status_code == 200
    assert content(team, "worker_team", dataset["id"], run=run_id, attempt=1).status_code == 409


def test_reference_dataset_has_nothing_to_download(team: Team) -> None:
    body = {"project": "team", "name": "big", "reference": "local/big.npz", "sha256": "cd" * 32}
    dataset = team.call("admin", "POST", "/api/v1/dataset-references", json=body).json()
    run_id = claimed_job(team, dataset["id"])
    info = team.call(
        "worker_team", "GET", f"/api/v1/datasets/{dataset['id']}", params={"run": run_id, "attempt": 1}
    )
    assert info.status_code == 200 and info.json()["reference"] == "local/big.npz"
    refused = content(team, "worker_team", dataset["id"], run=run_id, attempt=1)
    assert refused.status_code == 409 and "COLLAPSEWATCH_DATA_ROOTS" in refused.json()["message"]
