"""The worker's side of datasets (worker/datasets.py, worker/runner.py): a dataset downloaded only for
the run it holds and cached by content hash, references resolved under the host's data roots with
symlinks followed, and content that changed after registration failing the run with a clear error."""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from workerkit import LiveServer

from collapsewatch.sdk.client import ApiError, Client, Conflict
from worker.datasets import DatasetInfo, open_reference, resolve_reference
from worker.runner import run_job
from worker.settings import WorkerSettings
from worker.training.data import DataError

SPEC = {"dataset": "npz", "model": "mlp", "embedding_dim": 8, "epochs": 1, "probe_size": 16,
        "batch_size": 32, "device": "cpu"}  # fmt: skip


def npz_bytes(seed: int = 0, rows: int = 60) -> bytes:
    rng = np.random.default_rng(seed)
    buffer = io.BytesIO()
    np.savez(buffer, x=rng.normal(size=(rows, 5)).astype(np.float32), y=np.arange(rows) % 3)
    return buffer.getvalue()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def upload(live: LiveServer, data: bytes) -> dict[str, Any]:
    headers = {"Content-Type": "application/octet-stream"}
    params = {"project": "p", "name": "d"}
    if not live.http.get("/api/v1/datasets", params={"project": "p"}).is_success:
        live.post_ok("/api/v1/runs", json={"project": "p"})  # datasets go into existing projects
    result: dict[str, Any] = live.post_ok("/api/v1/datasets", params=params, content=data, headers=headers)
    return result


def reference(live: LiveServer, ref: str, sha: str) -> dict[str, Any]:
    if not live.http.get("/api/v1/datasets", params={"project": "p"}).is_success:
        live.post_ok("/api/v1/runs", json={"project": "p"})
    body = {"project": "p", "name": ref, "reference": ref, "sha256": sha}
    result: dict[str, Any] = live.post_ok("/api/v1/dataset-references", json=body)
    return result


def submit(live: LiveServer, dataset_id: int, **body: Any) -> list[int]:
    runs = live.post_ok(
        "/api/v1/jobs", json={"project": "p", "spec": SPEC | {"dataset_id": dataset_id}, **body}
    )
    return [int(run["id"]) for run in runs]


def worker_settings(live: LiveServer, tmp_path: Path, **values: Any) -> WorkerSettings:
    return WorkerSettings(
        server_url=live.url,
        worker_token=live.worker_token,
        heartbeat_seconds=5,
        dataset_cache_dir=tmp_path / "cache",
        _env_file=None,  # type: ignore[call-arg]
        **values,
    )


def stored(live: LiveServer) -> list[Path]:
    return sorted((live.settings.artifact_dir / "datasets").glob("*.npz"))


def test_run_job_trains_on_an_uploaded_dataset_and_caches_it_by_hash(
    live_server: LiveServer, tmp_path: Path
) -> None:
    data = npz_bytes()
    dataset = upload(live_server, data)
    first, second = submit(live_server, dataset["id"], seeds=[0, 1])
    settings = worker_settings(live_server, tmp_path)
    assert run_job(first, settings=settings) == "succeeded", live_server.run(first)["error"]
    cached = tmp_path / "cache" / f"{dataset['sha256']}.npz"
    assert cached.read_bytes() == data and [p.name for p in (tmp_path / "cache").iterdir()] == [cached.name]
    for path in stored(live_server):  # the server could no longer send it: the cache must serve
        path.unlink()
    assert run_job(second, settings=settings) == "succeeded", live_server.run(second)["error"]
    assert live_server.run(second)["last_epoch"] == 1


def test_run_job_fails_when_the_stored_file_was_swapped_after_upload(
    live_server: LiveServer, tmp_path: Path
) -> None:
    dataset = upload(live_server, npz_bytes(seed=0))
    [path] = stored(live_server)
    path.write_bytes(npz_bytes(seed=1))  # a valid .npz, but not the one registered
    [run_id] = submit(live_server, dataset["id"])
    assert run_job(run_id, settings=worker_settings(live_server, tmp_path)) == "failed"
    run = live_server.run(run_id)
    assert f"dataset_id {dataset['id']}: the content the server sent has sha256" in run["error"]
    assert "changed after it was registered" in run["error"] and dataset["sha256"] in run["error"]
    assert run["last_epoch"] is None and list((tmp_path / "cache").iterdir()) == []


def test_run_job_downloads_again_a_damaged_cache_file(live_server: LiveServer, tmp_path: Path) -> None:
    data = npz_bytes()
    dataset = upload(live_server, data)
    cached = tmp_path / "cache" / f"{dataset['sha256']}.npz"
    cached.parent.mkdir()
    cached.write_bytes(b"damaged")
    [run_id] = submit(live_server, dataset["id"])
    assert run_job(run_id, settings=worker_settings(live_server, tmp_path)) == "succeeded"
    assert cached.read_bytes() == data


def test_download_dataset_only_for_the_run_the_worker_holds(live_server: LiveServer, tmp_path: Path) -> None:
    data = npz_bytes()
    dataset = upload(live_server, data)
    [run_id] = submit(live_server, dataset["id"])
    dest = tmp_path / "got.npz"
    with Client(live_server.url, live_server.worker_token, max_retries=0) as worker:
        with pytest.raises(Conflict) as early:
            worker.download_dataset(dataset["id"], run_id=run_id, attempt=1, dest=dest)
        assert early.value.status_code == 409
        claim = worker.claim(run_id)
        assert worker.download_dataset(
            dataset["id"], run_id=run_id, attempt=claim.attempt, dest=dest
        ) == sha256(data)
        assert dest.read_bytes() == data
        with pytest.raises(ApiError) as other:
            worker.download_dataset(dataset["id"] + 1, run_id=run_id, attempt=claim.attempt, dest=dest)
        assert other.value.status_code == 404
    with (
        Client(live_server.url, live_server.user_token, max_retries=0) as user,
        pytest.raises(ApiError) as refused,
    ):
        user.download_dataset(dataset["id"], run_id=run_id, attempt=1, dest=dest)
    assert refused.value.status_code == 403


def test_run_job_reads_a_reference_under_the_workers_data_root(
    live_server: LiveServer, tmp_path: Path
) -> None:
    root = tmp_path / "srv-npz"
    (root / "sub").mkdir(parents=True)
    data = npz_bytes(seed=3)
    (root / "sub" / "train.npz").write_bytes(data)
    os.symlink(root / "sub" / "train.npz", root / "alias.npz")  # a link that stays inside is fine
    dataset = reference(live_server, "local/alias.npz", sha256(data))
    [run_id] = submit(live_server, dataset["id"])
    settings = worker_settings(live_server, tmp_path, data_roots=f"local={root}")
    assert run_job(run_id, settings=settings) == "succeeded", live_server.run(run_id)["error"]
    (root / "sub" / "train.npz").write_bytes(npz_bytes(seed=4))  # changed after registration
    [again] = submit(live_server, dataset["id"])
    assert run_job(again, settings=settings) == "failed"
    # the same words as a missing file: data roots are shared, the text tells nothing about what is there
    error = live_server.run(again)["error"]
    assert "no readable regular file with the registered sha256 under data root 'local'" in error
    assert sha256(npz_bytes(seed=4)) not in error


def test_run_job_refuses_a_link_out_of_the_root_whether_or_not_its_target_exists(
    live_server: LiveServer, tmp_path: Path
) -> None:
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    secret = npz_bytes(seed=5)
    (outside / "secret.npz").write_bytes(secret)
    os.symlink(outside / "secret.npz", root / "exists.npz")
    os.symlink(outside / "nothing.npz", root / "absent.npz")
    settings = worker_settings(live_server, tmp_path, data_roots=f"local={root}")
    errors = {}
    for name in ("exists", "absent"):
        dataset = reference(live_server, f"local/{name}.npz", sha256(secret))
        [run_id] = submit(live_server, dataset["id"])
        assert run_job(run_id, settings=settings) == "failed"
        error = live_server.run(run_id)["error"]
        assert "resolves outside data root 'local'" in error
        errors[name] = error.split("\n")[0].replace(f"dataset_id {dataset['id']}", "N").replace(name, "NAME")
    assert errors["exists"] == errors["absent"]


def _info(ref: str, sha: str = "0" * 64) -> DatasetInfo:
    return DatasetInfo(id=9, kind="reference", sha256=sha, reference=ref)


@pytest.mark.parametrize(
    ("ref", "words"),
    [
        ("local/../outside/secret.npz", "no '.', '..' or empty parts"),
        ("local//etc/passwd.npz", "no '.', '..' or empty parts"),
        ("other/secret.npz", "this worker has no data root 'other'"),
        ("local/up.npz", "resolves outside data root 'local'"),
        ("local/sub/up2.npz", "resolves outside data root 'local'"),
    ],
)
def test_resolve_reference_refuses_paths_leaving_the_root(tmp_path: Path, ref: str, words: str) -> None:
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    os.symlink("..", root / "sub" / "parent")
    os.symlink("../outside/secret.npz", root / "up.npz")
    os.symlink("parent/../../etc/passwd", root / "sub" / "up2.npz")
    with pytest.raises(DataError) as refused:
        resolve_reference(_info(ref), {"local": root})
    assert str(refused.value).startswith(f"dataset_id 9: reference {ref!r} refused: ") and words in str(
        refused.value
    )


def test_open_reference_refuses_what_is_not_a_regular_file_without_blocking(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    os.mkfifo(root / "pipe.npz")
    (root / "dir.npz").mkdir()
    (root / "other.npz").write_bytes(b"not the registered content")
    messages = set()
    for name in ("pipe.npz", "dir.npz", "missing.npz", "other.npz"):
        with pytest.raises(DataError, match="no readable regular file with the registered sha256") as refused:
            open_reference(_info(f"local/{name}"), {"local": root})
        messages.add(str(refused.value).replace(name, "NAME"))
    assert len(messages) == 1, messages  # missing, odd and different files read the same


def test_open_reference_hands_over_the_checked_file_at_its_start(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    data = npz_bytes()
    (root / "d.npz").write_bytes(data)
    with open_reference(_info("local/d.npz", sha256(data)), {"local": root}) as handle:
        assert handle.read() == data
