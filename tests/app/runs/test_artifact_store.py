"""The artifact store (app/runs/storage.py) on the local directory and on an S3-compatible server
(moto in server mode), the checkpoint store on top of it, and the checkpoint routes of two apps that
share one bucket (web replicas on different hosts)."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError
from s3kit import S3Server, free_port, moto_server

from app.auth.api_tokens import create_token, ensure_admin
from app.main import create_app
from app.runs.artifacts import CheckpointStore, CheckpointTooLarge, artifact_store
from app.runs.s3store import S3Store
from app.runs.storage import BlobStore, LocalStore, NotStored, TooLarge
from app.settings import Settings

MIB = 1024 * 1024


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    with moto_server(tmp_path_factory.mktemp("moto") / "moto.log") as server:
        yield server


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> BlobStore:
    """The same tests on both backends (the S3 one in a fresh bucket, under a prefix)."""
    if request.param == "local":
        return LocalStore(tmp_path / "artifacts")
    server: S3Server = request.getfixturevalue("s3")
    return S3Store(server.new_bucket(), "deploy/a", client=server.client())


async def _chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


def test_store_round_trips_streams_and_lists_by_prefix(store: BlobStore) -> None:
    assert asyncio.run(store.put_stream("checkpoints/1/a.ckpt", _chunks(b"ab", b"cd"), max_bytes=10)) == 4
    assert store.put_bytes("checkpoints/2/b.ckpt", b"xyz") == 3
    assert store.put_bytes("datasets/f00d.npz", b"npz") == 3
    assert store.get_bytes("checkpoints/1/a.ckpt") == b"abcd"
    assert b"".join(store.get_stream("checkpoints/2/b.ckpt")) == b"xyz"
    assert (store.size("datasets/f00d.npz"), store.size("datasets/nope.npz")) == (3, None)
    assert store.exists("checkpoints/1/a.ckpt") and not store.exists("checkpoints/1/nope.ckpt")
    assert store.list("checkpoints") == ["checkpoints/1/a.ckpt", "checkpoints/2/b.ckpt"]
    assert store.list() == ["checkpoints/1/a.ckpt", "checkpoints/2/b.ckpt", "datasets/f00d.npz"]
    assert store.list("checkpoints/3") == []
    store.put_bytes("checkpoints/1/a.ckpt", b"replaced")  # overwrite is whole
    assert store.get_bytes("checkpoints/1/a.ckpt") == b"replaced"
    assert store.delete("datasets/f00d.npz") and not store.delete("datasets/f00d.npz")
    assert store.delete_prefix("checkpoints") == 2 and store.list() == []
    with pytest.raises(NotStored):
        store.get_bytes("checkpoints/1/a.ckpt")
    with pytest.raises(NotStored):
        store.get_stream("checkpoints/1/a.ckpt")


def test_store_upload_over_limit_stores_nothing_and_keeps_the_old(store: BlobStore) -> None:
    store.put_bytes("checkpoints/5/x.ckpt", b"old")
    with pytest.raises(TooLarge):
        asyncio.run(store.put_stream("checkpoints/5/x.ckpt", _chunks(b"12345", b"678"), max_bytes=6))
    assert store.get_bytes("checkpoints/5/x.ckpt") == b"old"
    assert store.list("checkpoints/5") == ["checkpoints/5/x.ckpt"]  # no temporary leftovers


@pytest.mark.parametrize("key", ["../etc/passwd", "/abs", "a/../../b", "a//b", "a b", ""])
def test_store_when_key_escapes_or_is_odd_refuses_it(tmp_path: Path, key: str) -> None:
    with pytest.raises(ValueError, match="not allowed"):
        LocalStore(tmp_path).put_bytes(key, b"x")


def test_s3_store_streams_a_multipart_upload_larger_than_the_memory_buffer(s3: S3Server) -> None:
    store = S3Store(s3.new_bucket(), "", client=s3.client())
    block = bytes(range(256)) * 4096  # 1 MiB
    parts = [block] * 9  # 9 MiB: past the 8 MiB memory spool and boto3's multipart threshold
    assert asyncio.run(store.put_stream("datasets/big.npz", _chunks(*parts), max_bytes=10 * MIB)) == 9 * MIB
    digest = hashlib.sha256()
    for chunk in store.get_stream("datasets/big.npz"):
        digest.update(chunk)
    assert digest.hexdigest() == hashlib.sha256(b"".join(parts)).hexdigest()


def test_checkpoint_store_on_s3_keeps_only_the_newest_attempt_and_epoch(s3: S3Server) -> None:
    store = CheckpointStore(S3Store(s3.new_bucket(), "cw", client=s3.client()), max_bytes=100)
    store.write_bytes(7, 2, 1, b"attempt 2 epoch 1")
    store.write_bytes(7, 1, 5, b"late write of attempt 1")  # stale: must not shadow attempt 2
    latest = store.latest(7)
    assert latest is not None and (latest.attempt, latest.epoch, latest.path) == (2, 1, None)
    assert b"".join(store.read(latest)) == b"attempt 2 epoch 1"
    store.write_bytes(7, 2, 2, b"attempt 2 epoch 2")
    assert store.blobs.list("checkpoints/7") == ["checkpoints/7/a0002-e000002.ckpt"]
    store.write_bytes(8, 1, 1, b"other run")
    assert store.stored_run_ids() == [7, 8]
    assert store.remove(7) and store.latest(7) is None and not store.remove(7)
    with pytest.raises(CheckpointTooLarge):
        store.write_bytes(8, 1, 2, b"x" * 101)
    assert store.latest_epoch(8) == 1


def test_settings_when_artifact_store_is_not_s3_url_name_the_field() -> None:
    with pytest.raises(ValidationError, match=r"ARTIFACT_STORE .*s3://BUCKET"):
        Settings(artifact_store="ftp://bucket/x", _env_file=None)  # type: ignore[call-arg]
    local = Settings(artifact_dir=Path("/srv/a"), _env_file=None)  # type: ignore[call-arg]
    assert isinstance(artifact_store(local), LocalStore)


def _app(tmp_path: Path, **values: Any) -> Any:
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'cw.db'}", broker_url=f"sqla+sqlite:///{tmp_path / 'broker.db'}",
        artifact_dir=tmp_path / "unused-local-dir", secret_key="test", maintenance_interval_seconds=0,
        _env_file=None, **values,
    )  # type: ignore[call-arg]  # fmt: skip
    app = create_app(settings)
    app.state.enqueue = lambda run_id: None
    return app


def _headers(app: Any) -> tuple[dict[str, str], dict[str, str]]:
    """(user, worker) authorization headers of new tokens for the local admin."""
    with app.state.db.transaction() as session:
        admin = ensure_admin(session=session, email="admin@localhost")
        user = create_token(session=session, user=admin, name="u").token
        worker = create_token(session=session, user=admin, name="w", kind="worker").token
    return {"Authorization": f"Bearer {user}"}, {"Authorization": f"Bearer {worker}"}


def test_checkpoint_routes_on_s3_two_apps_share_the_bucket(tmp_path: Path, s3: S3Server) -> None:
    """Replica A stores the upload, replica B (its own process state, same database and bucket)
    serves it: nothing lands in either app's local ARTIFACT_DIR."""
    bucket = s3.new_bucket()
    replica_a, replica_b = (_app(tmp_path, **s3.settings_values(bucket)) for _ in range(2))
    with TestClient(replica_a) as a, TestClient(replica_b) as b:
        user, worker = _headers(replica_a)
        [run] = a.post("/api/v1/jobs", json={"spec": {"epochs": 3}}, headers=user).json()
        assert a.post(f"/api/v1/runs/{run['id']}/claim", json={}, headers=worker).status_code == 200
        data = bytes(range(256)) * 5000  # 1.2 MiB: over MAX_BODY_BYTES, under MAX_CHECKPOINT_BYTES
        put = a.put(
            f"/api/v1/runs/{run['id']}/checkpoint", params={"attempt": 1, "epoch": 2}, content=data,
            headers=worker | {"Content-Type": "application/octet-stream"},
        )  # fmt: skip
        assert put.status_code == 201, put.text
        got = b.get(f"/api/v1/runs/{run['id']}/checkpoint", headers=worker)
        assert got.status_code == 200 and got.content == data
        assert (got.headers["X-Checkpoint-Epoch"], got.headers["content-length"]) == ("2", str(len(data)))
    assert s3.client().list_objects_v2(Bucket=bucket, Prefix="team/checkpoints/")["KeyCount"] == 1
    assert not (tmp_path / "unused-local-dir" / "checkpoints").exists()


def test_checkpoint_routes_when_s3_is_unreachable_get_507_and_503_and_server_stays_up(tmp_path: Path) -> None:
    values = S3Server(f"http://127.0.0.1:{free_port()}").settings_values("nobucket")  # nothing listens
    app = _app(tmp_path, **values)
    with TestClient(app) as client:
        user, worker = _headers(app)
        [run] = client.post("/api/v1/jobs", json={"spec": {"epochs": 3}}, headers=user).json()
        assert client.post(f"/api/v1/runs/{run['id']}/claim", json={}, headers=worker).status_code == 200
        put = client.put(
            f"/api/v1/runs/{run['id']}/checkpoint", params={"attempt": 1, "epoch": 1}, content=b"w",
            headers=worker | {"Content-Type": "application/octet-stream"},
        )  # fmt: skip
        assert put.status_code == 507, put.text
        assert "could not store the checkpoint" in put.json()["message"] and "S3" in put.json()["message"]
        got = client.get(f"/api/v1/runs/{run['id']}/checkpoint", headers=worker)
        assert got.status_code == 503 and got.headers["Retry-After"] == "2", got.text
        assert "artifact store is unavailable" in got.json()["message"]
        assert client.get("/api/v1/runs", headers=user).status_code == 200


def test_an_upload_whose_run_was_purged_meanwhile_is_404_not_a_full_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The run finished, went to the trash and was purged while its checkpoint streamed in: the
    upload's folder went with it. The answer is the run's (404), with no disk-full alarm."""
    from app.runs import bulk

    app = _app(tmp_path)
    with TestClient(app) as client:
        user, worker = _headers(app)
        [run] = client.post("/api/v1/jobs", json={"spec": {"epochs": 3}}, headers=user).json()
        assert client.post(f"/api/v1/runs/{run['id']}/claim", json={}, headers=worker).status_code == 200

        async def purged_meanwhile(self: Any, run_id: int, *args: Any) -> Any:
            with app.state.db.transaction() as session:
                bulk.purge(session=session, run_ids=[run_id])
            raise FileNotFoundError(2, "No such file or directory", f"checkpoints/{run_id}/.upload-x")

        monkeypatch.setattr(CheckpointStore, "write_stream", purged_meanwhile)
        with caplog.at_level("ERROR"):
            put = client.put(
                f"/api/v1/runs/{run['id']}/checkpoint", params={"attempt": 1, "epoch": 1}, content=b"w",
                headers=worker | {"Content-Type": "application/octet-stream"},
            )  # fmt: skip
        assert put.status_code == 404 and "does not exist" in put.json()["message"], put.text
        assert not [r for r in caplog.records if "could not store a checkpoint" in r.getMessage()]
