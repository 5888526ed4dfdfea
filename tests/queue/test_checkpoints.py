"""The checkpoint store and its routes (in-process app on a SQLite file)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.auth.api_tokens import create_token, ensure_admin
from app.main import create_app
from app.runs.artifacts import CheckpointStore, CheckpointTooLarge
from app.settings import Settings

LIMIT = 4096


@pytest.fixture
def api(tmp_path: Path) -> Iterator[dict[str, Any]]:
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'cw.db'}", broker_url=f"sqla+sqlite:///{tmp_path / 'broker.db'}",
        artifact_dir=tmp_path / "artifacts", secret_key="test", max_body_bytes=1024,
        max_checkpoint_bytes=LIMIT, maintenance_interval_seconds=0, _env_file=None,
    )  # type: ignore[call-arg]  # fmt: skip
    app = create_app(settings)
    sent: list[int] = []
    app.state.enqueue = sent.append
    with TestClient(app) as client:
        with app.state.db.transaction() as session:
            admin = ensure_admin(session=session, email="admin@localhost")
            user = create_token(session=session, user=admin, name="u").token
            worker = create_token(session=session, user=admin, name="w", kind="worker").token
        client.headers["Authorization"] = f"Bearer {user}"
        [run] = client.post("/api/v1/jobs", json={"spec": {"epochs": 3}}).json()
        auth = {"Authorization": f"Bearer {worker}"}
        claim = client.post(f"/api/v1/runs/{run['id']}/claim", json={}, headers=auth)
        assert claim.status_code == 200 and sent == [run["id"]]
        yield {"client": client, "run": run["id"], "auth": auth, "app": app}


def put(api: dict[str, Any], data: bytes, *, attempt: int = 1, epoch: int = 1) -> Any:
    return api["client"].put(
        f"/api/v1/runs/{api['run']}/checkpoint", params={"attempt": attempt, "epoch": epoch},
        content=data, headers=api["auth"] | {"Content-Type": "application/octet-stream"},
    )  # fmt: skip


def test_upload_larger_than_body_limit_round_trips_with_epoch_header(api: dict[str, Any]) -> None:
    data = bytes(range(256)) * 12  # 3072 bytes: over MAX_BODY_BYTES, under MAX_CHECKPOINT_BYTES
    assert put(api, data, epoch=2).status_code == 201
    got = api["client"].get(f"/api/v1/runs/{api['run']}/checkpoint", headers=api["auth"])
    assert got.status_code == 200 and got.content == data
    assert got.headers["X-Checkpoint-Epoch"] == "2" and got.headers["X-Checkpoint-Attempt"] == "1"


def test_upload_over_checkpoint_limit_gets_413_and_keeps_the_previous(api: dict[str, Any]) -> None:
    assert put(api, b"first", epoch=1).status_code == 201
    response = put(api, b"x" * (LIMIT + 1), epoch=2)
    assert response.status_code == 413 and "MAX_CHECKPOINT_BYTES" in response.json()["message"]
    got = api["client"].get(f"/api/v1/runs/{api['run']}/checkpoint", headers=api["auth"])
    assert got.content == b"first" and got.headers["X-Checkpoint-Epoch"] == "1"


def test_upload_from_unclaimed_attempt_gets_409(api: dict[str, Any]) -> None:
    response = put(api, b"data", attempt=2)
    assert response.status_code == 409 and "attempt 2" in response.json()["message"]
    assert api["client"].get(f"/api/v1/runs/{api['run']}/checkpoint").status_code == 404


def test_download_unknown_run_or_missing_checkpoint_gets_404(api: dict[str, Any]) -> None:
    assert api["client"].get("/api/v1/runs/999/checkpoint").status_code == 404
    response = api["client"].get(f"/api/v1/runs/{api['run']}/checkpoint")
    assert response.status_code == 404 and "no checkpoint" in response.json()["message"]


def test_store_keeps_only_the_newest_attempt_and_epoch(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path, max_bytes=100)
    store.write_bytes(7, 2, 1, b"attempt 2 epoch 1")
    store.write_bytes(7, 1, 5, b"late write of attempt 1")  # stale: must not shadow attempt 2
    latest = store.latest(7)
    assert latest is not None and (latest.attempt, latest.epoch) == (2, 1)
    assert latest.path.read_bytes() == b"attempt 2 epoch 1"
    store.write_bytes(7, 2, 2, b"attempt 2 epoch 2")
    assert [p.name for p in store.run_dir(7).iterdir()] == ["a0002-e000002.ckpt"]
    assert store.remove(7) and store.latest(7) is None and not store.remove(7)


def test_stream_over_limit_leaves_no_partial_file(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path, max_bytes=10)

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(5):
            yield b"abcd"

    with pytest.raises(CheckpointTooLarge):
        asyncio.run(store.write_stream(3, 1, 1, chunks()))
    assert list(store.run_dir(3).iterdir()) == []
