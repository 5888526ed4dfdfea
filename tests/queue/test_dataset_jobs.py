"""Datasets with a real Celery worker (embedded SQLite broker): a job trains on an uploaded dataset to
``succeeded``, fetched over HTTP with the worker token and cached by hash on the worker's host; a
reference that leaves the worker's data root fails the run; a free path is refused at submit."""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

import numpy as np
import pytest

from tests.queue.harness import TINY_SPEC, Stack, assert_invariants

pytestmark = pytest.mark.slow


def _npz(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    buffer = io.BytesIO()
    np.savez(buffer, x=rng.normal(size=(120, 6)).astype(np.float32), y=np.arange(120) % 4)
    return buffer.getvalue()


def test_job_trains_on_an_uploaded_dataset_with_a_real_worker(sqlite_stack: Stack, tmp_path: Path) -> None:
    stack = sqlite_stack
    assert stack.http.post("/api/v1/runs", json={"project": "default"}).status_code == 201  # the project
    data = _npz(0)
    response = stack.http.post(
        "/api/v1/datasets",
        params={"project": "default", "name": "train"},
        content=data,
        headers={"Content-Type": "application/octet-stream"},
    )
    assert response.status_code == 201, response.text
    dataset = response.json()
    assert dataset["sha256"] == hashlib.sha256(data).hexdigest()

    for hostile in ("/etc/passwd", "~/.ssh/id_rsa", "../../etc/shadow"):
        refused = stack.http.post("/api/v1/jobs", json={"spec": {"dataset": "npz", "data_path": hostile}})
        assert refused.status_code == 422 and "dataset_id" in refused.json()["message"], refused.text

    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (outside / "secret.npz").write_bytes(_npz(1))
    os.symlink(outside / "secret.npz", root / "link.npz")
    body = {"project": "default", "name": "link", "reference": "local/link.npz", "sha256": "0" * 64}
    escaping = stack.http.post("/api/v1/dataset-references", json=body)
    assert escaping.status_code == 201, escaping.text

    cache = tmp_path / "worker-cache"
    stack.env |= {"COLLAPSEWATCH_DATASET_CACHE_DIR": str(cache), "COLLAPSEWATCH_DATA_ROOTS": f"local={root}"}
    stack.start_worker()
    [run] = stack.submit({"dataset": "npz", "dataset_id": dataset["id"], "epochs": 2})
    [bad] = stack.submit({"dataset": "npz", "dataset_id": escaping.json()["id"]})
    done = stack.wait_status(run["id"], {"succeeded", "failed"})
    epochs = assert_invariants(stack, done)
    assert [e["epoch"] for e in epochs] == [1, 2] and all(e["stats"]["mean_sv"] > 0 for e in epochs)
    assert (cache / f"{dataset['sha256']}.npz").read_bytes() == data
    failed = stack.wait_status(bad["id"], {"succeeded", "failed"})
    assert failed["status"] == "failed" and failed["attempt"] == 1
    assert "reference 'local/link.npz' refused: it resolves outside data root 'local'" in failed["error"]
    assert str(outside) not in failed["error"]
    assert TINY_SPEC["dataset"] == "digits"  # the harness's default jobs are unaffected
