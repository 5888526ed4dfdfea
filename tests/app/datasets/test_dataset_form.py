"""The job form's dataset picker and upload (/jobs/new, POST /jobs/datasets), in local mode (SQLite)."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from datasetkit import npz_bytes, pickled_npz
from fastapi.testclient import TestClient

from app.main import create_app
from app.settings import Settings


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[TestClient]:
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'cw.db'}",
        broker_url=f"sqla+sqlite:///{tmp_path / 'broker.db'}",
        artifact_dir=tmp_path / "artifacts",
        secret_key="form-tests",
        maintenance_interval_seconds=0,
        max_dataset_bytes=64 * 1024,
        _env_file=None,  # type: ignore[call-arg]
    )
    app = create_app(settings)
    app.state.enqueue = lambda run_id: None
    with TestClient(app, follow_redirects=False) as client:
        for project in ("p", "q"):  # datasets go into existing projects
            assert (
                client.post("/api/v1/runs", json={"project": project}, headers=_admin(client)).status_code
                == 201
            )
        yield client


def _admin(client: TestClient) -> dict[str, str]:
    from app.auth.api_tokens import create_token, ensure_admin

    with client.app.state.db.transaction() as session:  # type: ignore[attr-defined]
        admin = ensure_admin(session=session, email="admin@localhost")
        return {"Authorization": f"Bearer {create_token(session=session, user=admin, name='t').token}"}


def _csrf(client: TestClient) -> str:
    page = client.get("/jobs/new")
    assert page.status_code == 200, page.text
    found = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert found
    return found.group(1)


def _upload(
    client: TestClient, data: bytes, *, project: str = "p", name: str = "", filename: str = "d.npz"
) -> Any:
    fields = {"csrf_token": _csrf(client), "project": project, "name": name}
    return client.post(
        "/jobs/datasets", data=fields, files={"file": (filename, data, "application/octet-stream")}
    )


def _error(page: str, field: str) -> str:
    found = re.search(rf'data-error-for="{field}">([^<]*)<', page)
    assert found, f"no error under {field}"
    return html.unescape(found.group(1))


def _stored(client: TestClient) -> list[Path]:
    root = client.app.state.settings.artifact_dir / "datasets"  # type: ignore[attr-defined]
    return sorted(root.iterdir()) if root.exists() else []


def test_upload_from_the_form_comes_back_with_the_dataset_picked(browser: TestClient) -> None:
    done = _upload(browser, npz_bytes(rows=30), filename="train-set.npz")
    assert done.status_code == 303
    location = done.headers["location"]
    assert re.fullmatch(r"/jobs/new\?dataset=\d+", location)
    dataset_id = location.rsplit("=", 1)[1]
    page = browser.get(location)
    assert page.status_code == 200
    assert re.search(
        rf'<option value="{dataset_id}" selected>train-set\.npz \(#{dataset_id}, 30 rows\)', page.text
    )
    assert re.search(r"<option selected>npz</option>", page.text)
    assert "Dataset &#39;train-set.npz&#39;" in page.text and 'id="dataset-upload"' in page.text
    created = browser.post(
        "/jobs/new",
        data={
            "csrf_token": _csrf(browser),
            "project": "p",
            "dataset": "npz",
            "dataset_id": dataset_id,
            "epochs": "1",
        },
    )
    assert created.status_code == 303 and created.headers["location"].startswith("/runs/")
    run = browser.get(
        f"/api/v1/runs/{created.headers['location'].rsplit('/', 1)[1]}", headers=_admin(browser)
    )
    assert run.json()["config"]["dataset_id"] == int(dataset_id)


@pytest.mark.parametrize(
    ("data", "status", "words"),
    [
        (pickled_npz(), 422, "y: holds Python objects (a pickle)"),
        (npz_bytes(x=np.zeros((40, 6), dtype=np.int64)), 422, "x: must be a float array"),
        (b"not a zip at all", 422, "file: is not an .npz archive"),
        (npz_bytes(rows=3000, features=8), 413, "MAX_DATASET_BYTES"),
    ],
    ids=["pickle", "int-x", "not-npz", "too-big"],
)
def test_upload_from_the_form_refuses_bad_files_under_the_upload_field(
    browser: TestClient, data: bytes, status: int, words: str
) -> None:
    refused = _upload(browser, data)
    assert refused.status_code == status
    assert words in _error(refused.text, "dataset_file")
    assert _stored(browser) == []


def test_upload_from_the_form_into_a_missing_project_names_the_project_field(browser: TestClient) -> None:
    refused = _upload(browser, npz_bytes(), project="nowhere")
    assert refused.status_code == 404 and "does not exist" in _error(refused.text, "dataset_project")
    assert _stored(browser) == []


def test_upload_from_the_form_needs_the_csrf_token(browser: TestClient) -> None:
    files = {"file": ("d.npz", npz_bytes(), "application/octet-stream")}
    assert browser.post("/jobs/datasets", data={"project": "p"}, files=files).status_code == 403
    assert _stored(browser) == []


def test_job_form_lists_datasets_by_project_and_refuses_one_of_another_project(browser: TestClient) -> None:
    first = _upload(browser, npz_bytes(), project="p", name="alpha").headers["location"].rsplit("=", 1)[1]
    page = browser.get("/jobs/new").text
    assert '<optgroup label="p">' in page and f'<option value="{first}" >alpha (#{first}, 40 rows)' in page
    refused = browser.post(
        "/jobs/new",
        data={
            "csrf_token": _csrf(browser),
            "project": "q",
            "dataset": "npz",
            "dataset_id": first,
            "epochs": "1",
        },
    )
    assert refused.status_code == 404
    assert f"dataset {first} does not exist in project 'q'" in _error(refused.text, "dataset_id")
    missing = browser.post("/jobs/new", data={"csrf_token": _csrf(browser), "project": "p", "dataset": "npz"})
    assert missing.status_code == 422 and "pick a dataset" in _error(missing.text, "dataset_id")
