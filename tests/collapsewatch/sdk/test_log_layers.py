"""``run.log_embeddings({layer: matrix})``: one epoch, one record, against the real app (uvicorn, SQLite)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from collapsewatch.sdk import Client, start_run
from collapsewatch.stats import collapse_stats
from tests.collapsewatch.sdk.livekit import LiveServer, admin_token, server_settings


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """(url, user token) of the app under uvicorn in a thread."""
    settings = server_settings(tmp_path)
    token = admin_token(settings)
    server = LiveServer(settings)
    server.start()
    yield server.url, token
    server.stop()


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
