"""``run.log_embeddings({layer: matrix})``: one epoch, one record, against the real app (uvicorn, SQLite)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
import uvicorn

from app.auth.api_tokens import create_token, ensure_admin
from app.db import Database
from app.main import create_app
from app.migrate import upgrade
from app.settings import Settings
from collapsewatch.sdk import Client, start_run
from collapsewatch.stats import collapse_stats


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """(url, user token) of the app under uvicorn in a thread."""
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'collapsewatch.db'}",
        broker_url=f"sqla+sqlite:///{tmp_path / 'broker.db'}",
        artifact_dir=tmp_path / "artifacts",
        secret_key="test-secret",
        maintenance_interval_seconds=0,
        _env_file=None,  # type: ignore[call-arg]
    )
    database = Database(settings)
    try:
        upgrade(database.engine)
        with database.transaction() as session:
            admin = ensure_admin(session=session, email=settings.admin_email)
            token = create_token(session=session, user=admin, name="sdk layers").token
    finally:
        database.dispose()
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}", token
    server.should_exit = True
    thread.join(timeout=30)


def _client(url: str, token: str, tmp_path: Path) -> Client:
    return Client(
        url, token, spool_dir=tmp_path / "spool", max_retries=2, flush_interval=0.1, finish_timeout=30
    )


def test_log_embeddings_with_a_mapping_stores_one_record_with_every_layer(
    served: tuple[str, str], tmp_path: Path
) -> None:
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    hidden, embedding = rng.normal(size=(40, 24)), rng.normal(size=(40, 6))
    with _client(*served, tmp_path) as client:
        with start_run(client, "layers") as run:
            found = run.log_embeddings(
                {"fc1": hidden, "embedding": torch.as_tensor(embedding)}, 3, {"loss": 1.0}
            )
            first = run.log_embeddings({"conv1": hidden, "head": embedding}, 4)  # no "embedding": the first
        stored = client.request("GET", f"/api/v1/runs/{run.id}/epochs").json()
    assert [e["epoch"] for e in stored] == [3, 4]  # one record per epoch
    three, four = stored
    assert three["stats"] == collapse_stats(embedding) == found["embedding"]
    assert three["layers"] == {"fc1": collapse_stats(hidden), "embedding": collapse_stats(embedding)}
    assert three["metrics"] == {"loss": 1.0}
    assert four["stats"] == collapse_stats(hidden) == first["conv1"]
    assert set(four["layers"]) == {"conv1", "head"}


def test_log_embeddings_with_bad_mapping_raises_before_sending(
    served: tuple[str, str], tmp_path: Path
) -> None:
    with _client(*served, tmp_path) as client:
        with start_run(client, "layers") as run:
            with pytest.raises(ValueError, match="empty"):
                run.log_embeddings({}, 1)
            with pytest.raises(ValueError, match="layer name 'a b'"):
                run.log_embeddings({"a b": np.ones((4, 2))}, 1)
            with pytest.raises(ValueError, match=r"embeddings\['fc1'\]: shape"):
                run.log_embeddings({"fc1": np.ones(4)}, 1)
        assert client.request("GET", f"/api/v1/runs/{run.id}/epochs").json() == []
