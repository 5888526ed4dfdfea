"""Drill: workers whose wall clocks are minutes off (one 10 min ahead, one 10 min behind).

Leases are computed and checked by the server only (``lease_until`` = the server's now + lease), so
a skewed worker neither loses its lease early (a double run) nor keeps a dead one alive: every run
ends ``succeeded`` on its first attempt with each epoch once.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.queue.harness import SLOW_SPEC, Stack, assert_invariants

pytestmark = pytest.mark.slow
SKEWED = Path(__file__).resolve().parent / "skewed_clock"
SKEW_S = 600


def _start_skewed_worker(stack: Stack, skew_s: int, name: str) -> None:
    saved = dict(stack.env)
    path = os.pathsep.join(p for p in (str(SKEWED), saved.get("PYTHONPATH", "")) if p)
    stack.env |= {"PYTHONPATH": path, "CW_CLOCK_SKEW_S": str(skew_s)}
    try:
        stack.start_worker(name=name)
    finally:
        stack.env = saved


def test_the_skewed_clock_is_really_skewed_in_the_worker_process() -> None:
    env = os.environ | {"PYTHONPATH": str(SKEWED), "CW_CLOCK_SKEW_S": str(-SKEW_S)}
    code = "import time, datetime; print(time.time() - time.monotonic(), datetime.datetime.now().timestamp())"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    plain = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    skewed_now = float(out.stdout.split()[1])
    real_now = float(plain.stdout.split()[1])
    assert real_now - skewed_now > SKEW_S - 60


def test_workers_with_skewed_clocks_never_double_run(tmp_path: Path) -> None:
    stack = Stack(tmp_path / "stack")  # lease 6 s, heartbeat 1 s, reaper every 0.5 s
    try:
        stack.start_server()
        _start_skewed_worker(stack, SKEW_S, "ahead@drill")
        _start_skewed_worker(stack, -SKEW_S, "behind@drill")
        runs = stack.submit(SLOW_SPEC | {"epochs": 4}, seeds=[0, 1, 2, 3])
        ended = [stack.wait_status(run["id"], {"succeeded", "failed"}, timeout=300) for run in runs]

        for run in ended:
            assert run["attempt"] == 1, f"run {run['id']} was re-claimed: {run}"
            assert_invariants(stack, run)
        pids = {run["worker"]["pid"] for run in ended}
        assert len(pids) >= 2, f"both skewed workers should have trained runs: {pids}"
    finally:
        stack.close()


def test_heartbeat_pace_comes_from_the_server_lease_not_the_worker_clock(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from datetime import UTC, datetime, timedelta

    from collapsewatch.contract import ClaimPublic, JobSpec
    from worker import runner
    from worker.settings import WorkerSettings

    now = datetime.now(UTC)
    run = {"id": 1, "project": "p", "name": None, "kind": "job", "status": "running", "attempt": 1,
           "max_attempts": 3, "config": {}, "tags": [], "sweep_id": None, "created_at": now,
           "started_at": now, "finished_at": None, "lease_until": now, "cancel_requested": False,
           "error": None, "worker": None, "summary": {}, "last_epoch": None}  # fmt: skip
    claim = ClaimPublic.model_validate(
        {
            "run": run,
            "attempt": 1,
            "lease_until": now + timedelta(seconds=6),
            "spec": JobSpec(),
            "lease_seconds": 6,
        }
    )
    settings = WorkerSettings(heartbeat_seconds=10, _env_file=None)  # type: ignore[call-arg]

    class AheadClock(datetime):
        @classmethod
        def now(cls, tz: object = None) -> datetime:  # type: ignore[override]
            return datetime.now(UTC) + timedelta(seconds=SKEW_S)

    on_time = runner._heartbeat_interval(claim, settings)
    monkeypatch.setattr(runner, "datetime", AheadClock)
    assert runner._heartbeat_interval(claim, settings) == on_time == 2.0  # a third of the 6 s lease
    legacy = claim.model_copy(update={"lease_seconds": None})
    assert runner._heartbeat_interval(legacy, settings) == 0.2  # what the worker's clock alone gives
