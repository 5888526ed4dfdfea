"""The SDK against the real app served by uvicorn on 127.0.0.1 with a SQLite file database.

Includes the issue's "Must show": the server is shut down mid-run, the loop keeps logging (writes
spool to disk), a new server starts on the same database file and port, and after ``finish`` every
epoch and every scalar point is stored exactly once.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from app.auth.api_tokens import create_token, ensure_admin
from app.db import Database
from app.migrate import upgrade
from app.settings import Settings
from collapsewatch.sdk import Client, start_run
from collapsewatch.stats import collapse_stats
from tests.collapsewatch.sdk.livekit import LiveServer


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        database_url=f"sqlite:///{tmp_path / 'collapsewatch.db'}",
        broker_url=f"sqla+sqlite:///{tmp_path / 'broker.db'}",
        artifact_dir=tmp_path / "artifacts",
        secret_key="test-secret",
        maintenance_interval_seconds=0,
        _env_file=None,  # type: ignore[call-arg]
    )


@pytest.fixture
def token(settings: Settings) -> str:
    database = Database(settings)
    try:
        upgrade(database.engine)
        with database.transaction() as session:
            admin = ensure_admin(session=session, email=settings.admin_email)
            return create_token(session=session, user=admin, name="sdk test").token
    finally:
        database.dispose()


@pytest.fixture
def live(settings: Settings, token: str) -> Iterator[LiveServer]:
    server = LiveServer(settings)
    server.start()
    yield server
    if server._server is not None:
        server.stop()


def make_client(live: LiveServer, token: str, tmp_path: Path) -> Client:
    return Client(
        live.url, token, spool_dir=tmp_path / "spool", max_retries=2, backoff=0.02, backoff_max=0.2,
        flush_interval=0.1, finish_timeout=30,
    )  # fmt: skip


def embeddings(epoch: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(epoch)
    return torch.randn(48, 12, generator=generator, dtype=torch.float64) * (1.0 / epoch)


def scalar_series(client: Client, run_id: int, key: str) -> tuple[int, list[tuple[int, float]]]:
    response = client.request(
        "GET", "/api/v1/series", params={"run": run_id, "key": key, "max_points": 10_000, "source": "metric"}
    )
    (series,) = response.json()
    return series["total"], [(p["x"], p["y"]) for p in series["points"]]


def test_sdk_run_round_trips_through_the_real_app(live: LiveServer, token: str, tmp_path: Path) -> None:
    torch.set_num_threads(1)
    with make_client(live, token, tmp_path) as client:
        with start_run(client, "sdk-test", {"lr": 0.05, "dims": [12]}, name="round trip", tags=["a"]) as run:
            for epoch in range(1, 4):
                for step in range((epoch - 1) * 40, epoch * 40):
                    run.log({"loss": 1.0 / (step + 1), "acc": step / 200}, step=step)
                run.log_embeddings(
                    embeddings(epoch), epoch, {"train_loss": 0.5 / epoch, "val_acc": float("nan")}
                )
            run.log_lines(["hello from the SDK"])
        info = client.get_run(run.id)
        stored = client.list_epochs(run.id)
        total, loss = scalar_series(client, run.id, "loss")
        logs = client.request("GET", f"/api/v1/runs/{run.id}/logs").json()
    assert (info.status, info.project, info.name, info.tags) == ("succeeded", "sdk-test", "round trip", ["a"])
    assert info.config == {"lr": 0.05, "dims": [12]}
    assert [e.epoch for e in stored] == [1, 2, 3]
    for record in stored:
        assert record.metrics == {"train_loss": 0.5 / record.epoch, "val_acc": None}
        assert record.stats is not None
        expected = collapse_stats(embeddings(record.epoch))
        got = record.stats.model_dump()
        assert got.keys() == expected.keys()
        for key, value in expected.items():
            if key == "std_hist":
                assert dict(got[key]) == value
            else:
                assert got[key] == pytest.approx(value, rel=1e-12), key
    assert total == 120
    assert loss == [(step, 1.0 / (step + 1)) for step in range(120)]
    assert [line["line"] for line in logs] == ["hello from the SDK"]


def log_epoch(run: Any, epoch: int) -> None:
    for step in range(epoch * 30, epoch * 30 + 30):
        run.log({"loss": step * 0.5, "lr": 0.1}, step=step)
    run.log_embeddings(embeddings(epoch), epoch, {"train_loss": 1.0 / epoch})


def test_server_restart_mid_run_loses_and_duplicates_nothing(
    live: LiveServer, token: str, tmp_path: Path
) -> None:
    torch.set_num_threads(1)
    with make_client(live, token, tmp_path) as client:
        run = start_run(client, "outage", {"epochs": 8})
        for epoch in range(1, 4):
            log_epoch(run, epoch)
        assert run.flush(timeout=30)

        live.stop()  # the server goes away mid-run; the training loop keeps going
        for epoch in range(4, 9):
            log_epoch(run, epoch)
        run.flush(timeout=0.3)
        assert run.pending > 0
        assert list(client.spool_dir.glob(f"run-{run.id}.*.jsonl"))  # spooled to disk, not just held

        live.start()  # a new server process on the same database file and port
        assert run.finish()
        assert not list(client.spool_dir.glob("*.jsonl"))

        info = client.get_run(run.id)
        stored = client.list_epochs(run.id)
        total, loss = scalar_series(client, run.id, "loss")
        lr_total, _ = scalar_series(client, run.id, "lr")
    assert info.status == "succeeded"
    assert [e.epoch for e in stored] == list(range(1, 9))
    assert [e.metrics["train_loss"] for e in stored] == [1.0 / epoch for epoch in range(1, 9)]
    assert total == lr_total == 8 * 30
    assert loss == [(step, step * 0.5) for step in range(30, 9 * 30)]


def test_writes_left_by_a_run_that_ended_during_an_outage_are_recovered(
    live: LiveServer, token: str, tmp_path: Path
) -> None:
    torch.set_num_threads(1)
    with make_client(live, token, tmp_path) as client:
        run = start_run(client, "outage")
        log_epoch(run, 1)
        live.stop()
        log_epoch(run, 2)
        assert run.finish(timeout=0.3) is False  # the server is still down: the spool stays on disk
    live.start()
    with make_client(live, token, tmp_path) as client:
        delivered, left = client.flush_spool()
        assert left == 0 and delivered > 0
        info = client.get_run(run.id)
        stored = client.list_epochs(run.id)
        total, _ = scalar_series(client, run.id, "loss")
    assert info.status == "succeeded"
    assert [e.epoch for e in stored] == [1, 2]
    assert total == 60
