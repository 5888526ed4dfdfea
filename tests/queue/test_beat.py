"""``collapsewatch beat``: the reaper/sweeper loop as its own process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from app.db import Database
from app.migrate import upgrade
from app.settings import Settings
from tests.queue.harness import REPO, wait_for
from tests.queue.test_reaper import add_run, get

pytestmark = pytest.mark.slow


def test_beat_reaps_expired_leases_and_stops_on_sigterm(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'cw.db'}"
    database = Database(Settings(database_url=url, _env_file=None))  # type: ignore[call-arg]
    upgrade(database.engine)
    from app.models import utcnow

    run_id = add_run(database, status="running", attempt=1, lease_until=utcnow() - timedelta(seconds=5))
    env = dict(
        os.environ, DATABASE_URL=url, BROKER_URL=f"sqla+sqlite:///{tmp_path / 'broker.db'}",
        ARTIFACT_DIR=str(tmp_path / "artifacts"), MAINTENANCE_INTERVAL_SECONDS="0.3",
    )  # fmt: skip
    beat = subprocess.Popen(
        [sys.executable, "-m", "collapsewatch.cli", "beat"],
        env=env,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for(lambda: get(database, run_id).status == "lost", timeout=60, what="beat to reap the run")
        beat.send_signal(signal.SIGTERM)
        assert beat.wait(timeout=30) == 0
    finally:
        if beat.poll() is None:
            beat.kill()
        database.dispose()
    assert b"reaper/sweeper every 0.3 s" in (beat.stdout.read() if beat.stdout else b"")
