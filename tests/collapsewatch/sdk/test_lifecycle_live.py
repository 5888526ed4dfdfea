"""SDK runs are never left running: heartbeats, ``crashed`` after kill -9, resume, provenance; against
the real app under uvicorn with a short lease and its reaper running."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

import collapsewatch as cw
from app.settings import Settings
from collapsewatch.sdk import Client
from tests.collapsewatch.sdk.livekit import LiveServer, admin_token, server_settings

ROOT = Path(__file__).resolve().parents[3]
LEASE = 2  # seconds: the reaper marks a silent run crashed soon after

SCRIPT = """
import sys, time
import numpy as np
import collapsewatch as cw

run = cw.init(project="crash", config={"seed": 0})
for epoch in range(1, 4):
    run.log({"loss": 1.0 / epoch}, step=epoch)
    run.log_embeddings(np.random.default_rng(epoch).normal(size=(32, 8)), epoch=epoch)
assert run.flush(timeout=60)
print(run.id, flush=True)
time.sleep(600)  # "training" goes on until the kill
"""


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    (tmp_path / "server").mkdir()
    return server_settings(tmp_path / "server", lease_seconds=LEASE, maintenance_interval_seconds=0.2)


@pytest.fixture
def live(settings: Settings) -> Iterator[LiveServer]:
    server = LiveServer(settings)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def env(
    live: LiveServer, settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> dict[str, str]:
    values = {
        "COLLAPSEWATCH_URL": live.url,
        "COLLAPSEWATCH_TOKEN": admin_token(settings),
        "COLLAPSEWATCH_SPOOL_DIR": str(tmp_path / "spool"),
    }
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    return values


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=True)
    return done.stdout.strip()


def wait_for_status(client: Client, run_id: int, status: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while client.get_run(run_id).status != status:
        assert time.monotonic() < deadline, f"run {run_id} never became {status}"
        time.sleep(0.1)


def test_killed_logging_process_ends_crashed_and_resume_continues_after_its_last_epoch(
    env: dict[str, str], live: LiveServer, tmp_path: Path
) -> None:
    repo = tmp_path / "project"
    repo.mkdir()
    (repo / "train.py").write_text(SCRIPT)
    git(repo, "init", "-q")
    git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "add", "train.py")
    git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "train")
    (repo / "train.py").write_text(SCRIPT + "\n# an uncommitted change\n")
    child = subprocess.Popen(
        [sys.executable, "train.py", "--lr", "0.1", "--api-token", "hunter2"],
        cwd=repo, env={**os.environ, **env, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert child.stdout is not None
        run_id = int(child.stdout.readline())
        with Client(live.url, env["COLLAPSEWATCH_TOKEN"]) as client:
            time.sleep(3 * LEASE)  # alive: its heartbeats keep the run running past several leases
            assert client.get_run(run_id).status == "running"
            os.kill(child.pid, signal.SIGKILL)
            child.wait()
            wait_for_status(client, run_id, "crashed")
            info = client.get_run(run_id)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert info.last_epoch == 3 and info.error is not None and "resume=True" in info.error
    provenance = info.provenance or {}
    assert provenance["git"] == {
        "commit": git(repo, "rev-parse", "HEAD"),
        "dirty": True,
        "branch": git(repo, "branch", "--show-current"),
    }
    assert provenance["command"].endswith("train.py --lr 0.1 --api-token '***'")
    assert provenance["python"] and provenance["host"] and "numpy" in provenance["packages"]
    page = httpx.get(f"{live.url}/runs/{run_id}").text  # SQLite: the browser is the local admin
    assert 'class="badge s-crashed"' in page and "resume=True" in page
    assert provenance["git"]["commit"] in page and "uncommitted changes" in page and "hunter2" not in page
    table = httpx.get(f"{live.url}/runs", params={"status": "crashed"}).text
    assert f'data-run-id="{run_id}"' in table and "<option selected>crashed</option>" in table

    with cw.init(id=run_id, resume=True) as run:
        assert (run.id, run.attempt, run.start_epoch) == (run_id, 2, 4)
        for epoch in range(run.start_epoch, 6):
            run.log_embeddings(np.random.default_rng(epoch).normal(size=(32, 8)), epoch=epoch)
    with Client(live.url, env["COLLAPSEWATCH_TOKEN"]) as client:
        final = client.get_run(run_id)
        epochs = client.list_epochs(run_id)
    assert (final.status, final.attempt) == ("succeeded", 2)
    assert [(e.epoch, e.attempt) for e in epochs] == [(1, 1), (2, 1), (3, 1), (4, 2), (5, 2)]
    assert all(e.stats is not None for e in epochs)


def test_run_marked_crashed_while_alive_comes_back_on_its_next_write(
    env: dict[str, str], live: LiveServer
) -> None:
    run = cw.init(project="blip")
    assert run.id is not None and run._heartbeat is not None
    run._heartbeat.stop()  # as if the network were down for longer than the lease
    with Client(live.url, env["COLLAPSEWATCH_TOKEN"]) as client:
        wait_for_status(client, run.id, "crashed")  # the server's reaper gave up on it
    run.log_embeddings(np.ones((8, 4)) + np.eye(8, 4), epoch=1)  # the network is back
    assert run.finish()
    with Client(live.url, env["COLLAPSEWATCH_TOKEN"]) as client:
        info = client.get_run(run.id)
        assert (info.status, info.attempt) == ("succeeded", 1)
        assert [e.epoch for e in client.list_epochs(run.id)] == [1]


OFFLINE_SCRIPT = """
import sys, time
import collapsewatch as cw

run = cw.init(project="offline-crash", mode="offline", dir=sys.argv[1])
for step in range(5):
    run.log({"loss": 1.0 / (step + 1)}, step=step)
run.log_epoch(1, {"train_loss": 0.5})
print(run.dir, flush=True)
time.sleep(600)
"""


def test_offline_run_killed_before_finishing_syncs_then_ends_crashed(
    env: dict[str, str], live: LiveServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from collapsewatch.cli import main as cli_main

    child = subprocess.Popen(
        [sys.executable, "-c", OFFLINE_SCRIPT, str(tmp_path / "runs")],
        env={**os.environ, **env, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert child.stdout is not None
    path = child.stdout.readline().strip()
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    assert cli_main(["sync", path, "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "never finished" in out
    run_id = int(out.split(f"-> {live.url}/runs/")[1].split()[0])
    with Client(live.url, env["COLLAPSEWATCH_TOKEN"]) as client:
        assert [e.epoch for e in client.list_epochs(run_id)] == [1]
        wait_for_status(client, run_id, "crashed")
