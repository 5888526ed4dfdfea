"""Offline runs, ``collapsewatch sync`` (idempotent, resumable after kill -9), disabled mode, and
``init`` when the server is unreachable; against the real app served by uvicorn."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import collapsewatch as cw
from app.db import Database
from app.models import Run as RunRow
from app.models import RunEvent
from app.settings import Settings
from collapsewatch.cli import main as cli_main
from collapsewatch.sdk import Client, OfflineRun, ServerUnavailable
from collapsewatch.sdk.offline import SYNC_FILE, read_writes
from tests.collapsewatch.sdk.livekit import LiveServer, admin_token, free_port, server_settings

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return server_settings(tmp_path / "server")


@pytest.fixture
def token(settings: Settings) -> str:
    (settings.artifact_dir.parent).mkdir(parents=True, exist_ok=True)
    return admin_token(settings)


@pytest.fixture
def live(settings: Settings, token: str) -> Iterator[LiveServer]:
    server = LiveServer(settings)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def env(live: LiveServer, token: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    values = {
        "COLLAPSEWATCH_URL": live.url,
        "COLLAPSEWATCH_TOKEN": token,
        "COLLAPSEWATCH_SPOOL_DIR": str(tmp_path / "spool"),
        "COLLAPSEWATCH_DIR": str(tmp_path / "offline"),
    }
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    return values


def train(run: cw.Run, epochs: int = 3, steps: int = 20, d: int = 8) -> None:
    """A deterministic 'training loop' (seeded): scalars every step, statistics every epoch."""
    rng = np.random.default_rng(0)
    for epoch in range(1, epochs + 1):
        for step in range((epoch - 1) * steps, epoch * steps):
            run.log({"loss": float(rng.random()), "lr": 0.1}, step=step)
        run.log_embeddings(rng.normal(size=(32, d)) / epoch, epoch=epoch, metrics={"val_acc": epoch / 10})
    run.log_lines(["done"])


def stored(client: Client, run_id: int) -> dict[str, Any]:
    """Everything the server holds about a run that training wrote."""
    info = client.get_run(run_id)
    epochs = [e.model_dump(exclude={"recorded_at"}) for e in client.list_epochs(run_id)]
    series = {}
    for key in ("loss", "lr"):
        params = {"run": run_id, "key": key, "max_points": 10_000, "source": "metric"}
        (found,) = client.request("GET", "/api/v1/series", params=params).json()
        series[key] = [(p["x"], p["y"]) for p in found["points"]]
    logs = [line["line"] for line in client.request("GET", f"/api/v1/runs/{run_id}/logs").json()]
    keep = ("project", "name", "config", "tags", "status", "attempt", "last_epoch", "summary")
    return {"run": {k: getattr(info, k) for k in keep}, "epochs": epochs, "series": series, "logs": logs}


def db_snapshot(settings: Settings, project: str) -> tuple[list[tuple[Any, ...]], int]:
    database = Database(settings)
    try:
        with database.session(write=False) as session:
            runs = session.query(RunRow).join(RunRow.project).all()
            rows = [(r.id, r.client_id, r.status, r.updated_at) for r in runs if r.project.name == project]
            events = session.query(RunEvent).count()
            return rows, events
    finally:
        database.dispose()


def offline_run_dir(root: Path) -> Path:
    (path,) = root.glob("offline-run-*")
    return path


def test_offline_run_then_sync_stores_what_an_online_run_of_the_same_seed_stores(
    env: dict[str, str], settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with cw.init(project="same", config={"seed": 0, "lr": 0.1}, name="twin") as online:
        train(online)
    assert online.id is not None
    with cw.init(project="same", config={"seed": 0, "lr": 0.1}, name="twin", mode="offline") as offline:
        assert isinstance(offline, OfflineRun) and offline.id is None
        train(offline)
    path = offline_run_dir(tmp_path / "offline")
    assert str(path) in capsys.readouterr().err  # init said where the run went

    assert cli_main(["sync", str(path), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "synced" in out and str(path) in out
    synced_id = json.loads((path / SYNC_FILE).read_text())[env["COLLAPSEWATCH_URL"]]["run_id"]
    with Client(env["COLLAPSEWATCH_URL"], env["COLLAPSEWATCH_TOKEN"]) as client:
        want, got = stored(client, online.id), stored(client, synced_id)
    assert got == want
    assert [e["epoch"] for e in got["epochs"]] == [1, 2, 3] and all(e["stats"] for e in got["epochs"])
    assert got["run"]["status"] == "succeeded" and len(got["series"]["loss"]) == 60

    before = db_snapshot(settings, "same")
    assert cli_main(["sync", str(path), "--quiet"]) == 0  # the second sync changes nothing
    assert "already synced" in capsys.readouterr().out
    assert cli_main(["sync", "--quiet"]) == 0  # no PATH: every unsynced run under COLLAPSEWATCH_DIR
    (path / SYNC_FILE).unlink()  # a copy of the directory elsewhere: the client_id still finds the run
    assert cli_main(["sync", str(path), "--quiet"]) == 0
    assert f"already synced {path} -> {env['COLLAPSEWATCH_URL']}/runs/{synced_id}" in capsys.readouterr().out
    assert db_snapshot(settings, "same") == before


def test_sync_killed_midway_resumes_on_rerun_without_a_second_run(
    env: dict[str, str], settings: Settings, tmp_path: Path
) -> None:
    epochs = 120
    with cw.init(project="kill", mode="offline") as offline:
        train(offline, epochs=epochs, steps=2, d=4)
    path = offline_run_dir(tmp_path / "offline")
    _entries, end = read_writes(path)
    command = [sys.executable, "-m", "collapsewatch.cli", "sync", str(path), "--quiet"]
    child_env = {**os.environ, **env, "PYTHONPATH": str(ROOT)}
    child = subprocess.Popen(command, env=child_env, cwd=tmp_path)
    deadline = time.monotonic() + 120
    offset = 0
    while offset < end // 4 and child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
        try:
            offset = json.loads((path / SYNC_FILE).read_text())[env["COLLAPSEWATCH_URL"]]["offset"]
        except (FileNotFoundError, ValueError, KeyError):
            continue
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    state = json.loads((path / SYNC_FILE).read_text())[env["COLLAPSEWATCH_URL"]]
    assert 0 < state["offset"] < end, "the kill must land mid-sync"

    rerun = subprocess.run(command, env=child_env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    (row,) = db_snapshot(settings, "kill")[0]  # one run for the client_id
    with Client(env["COLLAPSEWATCH_URL"], env["COLLAPSEWATCH_TOKEN"]) as client:
        got = stored(client, row[0])
    assert [e["epoch"] for e in got["epochs"]] == list(range(1, epochs + 1))
    assert got["run"]["status"] == "succeeded" and len(got["series"]["loss"]) == 2 * epochs
    assert got["logs"] == ["done"]


def test_offline_mode_from_the_environment_uses_no_network_and_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COLLAPSEWATCH_MODE", "offline")
    monkeypatch.delenv("COLLAPSEWATCH_DIR", raising=False)
    monkeypatch.delenv("COLLAPSEWATCH_TOKEN", raising=False)

    def no_network(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("offline mode touched the network")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    with cw.init(project="p", config={"a": 1}) as run:
        train(run, epochs=2)
    path = offline_run_dir(tmp_path / "collapsewatch")
    assert str(path) in capsys.readouterr().err
    entries, _end = read_writes(path)
    kinds = [entry["kind"] for entry, _ in entries]
    assert kinds.count("epoch") == 2 and kinds[-1] == "finish" and "metrics" in kinds
    assert json.loads((path / "run.json").read_text())["config"] == {"a": 1}


def test_disabled_mode_makes_every_call_a_no_op(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("COLLAPSEWATCH_DIR", raising=False)
    monkeypatch.setenv("COLLAPSEWATCH_MODE", "disabled")
    monkeypatch.setenv("COLLAPSEWATCH_URL", f"http://127.0.0.1:{free_port()}")  # nothing listens there
    with cw.init(project="p", config={"a": 1}) as run:
        assert run.log({"loss": 1.0}, step=0) is None
        assert run.log_embeddings(np.ones((4, 3)), epoch=1) is None
        run.log_epoch(1, {"acc": 0.5})
        run.log_lines(["x"])
    assert run.finish() and run.mode == "disabled"
    assert list(tmp_path.iterdir()) == []


def test_init_when_the_server_is_unreachable_gives_up_in_time_with_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLLAPSEWATCH_SPOOL_DIR", str(tmp_path / "spool"))
    with socket.socket() as silent:  # accepts connections (the kernel does) but never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        for url in (f"http://127.0.0.1:{free_port()}", f"http://127.0.0.1:{silent.getsockname()[1]}"):
            started = time.monotonic()
            with pytest.raises(ServerUnavailable) as caught:
                cw.init(project="p", url=url, token="cw_test")
            assert time.monotonic() - started < 5.0  # the bound for giving up
            message = str(caught.value)
            assert url in message and "mode='offline'" in message and "\n" not in message


def test_init_with_offline_fallback_keeps_logging_to_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("COLLAPSEWATCH_SPOOL_DIR", str(tmp_path / "spool"))
    url = f"http://127.0.0.1:{free_port()}"
    run = cw.init(project="p", url=url, token="cw_test", fallback="offline", dir=tmp_path / "runs")
    assert isinstance(run, OfflineRun)
    train(run, epochs=1)
    assert run.finish()
    err = capsys.readouterr().err
    assert url in err and "offline" in err and str(run.dir) in err
    assert [entry["kind"] for entry, _ in read_writes(run.dir)[0]][-1] == "finish"


def test_sync_of_an_offline_run_still_being_written_skips_it(env: dict[str, str], tmp_path: Path) -> None:
    run = cw.init(project="busy", mode="offline")
    run.log({"loss": 1.0}, step=0)
    try:
        assert cli_main(["sync", str(run.dir), "--quiet"]) == 1
        assert not (run.dir / SYNC_FILE).exists()
    finally:
        run.finish()
    assert cli_main(["sync", str(run.dir), "--quiet"]) == 0


def test_an_offline_run_names_its_directory_in_its_warnings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COLLAPSEWATCH_MODE", "offline")
    monkeypatch.delenv("COLLAPSEWATCH_DIR", raising=False)
    with cw.init(project="p") as run, caplog.at_level("WARNING"):
        run.log({"bad": float("nan")}, step=1)
    [message] = [r.getMessage() for r in caplog.records if "dropped" in r.getMessage()]
    assert message.startswith(f"offline run {offline_run_dir(tmp_path / 'collapsewatch')}: bad=nan at step 1")
    assert "None" not in message
