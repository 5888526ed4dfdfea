"""Submit -> a real Celery worker trains -> epochs arrive over the API and SSE -> final status."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from typing import Any

import httpx
import pytest

from tests.queue.harness import REPO, SLOW_SPEC, Stack, assert_invariants, free_port, stop, wait_for

pytestmark = pytest.mark.slow


def team(test: Any) -> Any:
    """Runs on the team-mode stack: PostgreSQL + Redis."""
    return pytest.mark.postgres(pytest.mark.redis(test))


def sse_events(stack: Stack, run_id: int, out: list[dict[str, Any]]) -> None:
    """Read the run's SSE stream from the first event until the server ends it (run finished)."""
    client = httpx.Client(base_url=stack.url, headers=stack.http.headers, timeout=120)
    with client, client.stream("GET", f"/api/v1/runs/{run_id}/events", params={"last_event_id": 0}) as resp:
        kind = None
        for line in resp.iter_lines():
            if line.startswith("event:"):
                kind = line.split(":", 1)[1].strip()
            elif line.startswith("data:") and kind:
                out.append({"event": kind, "data": json.loads(line.split(":", 1)[1])})


@team
def test_submit_job_succeeds_with_epochs_over_api_and_sse_in_team_mode(redis_stack: Stack) -> None:
    [run] = redis_stack.submit({"epochs": 3})
    seen: list[dict[str, Any]] = []
    reader = threading.Thread(target=sse_events, args=(redis_stack, run["id"], seen), daemon=True)
    reader.start()
    done = redis_stack.wait_status(run["id"], {"succeeded", "failed"})
    epochs = assert_invariants(redis_stack, done)
    assert done["attempt"] == 1
    assert [e["epoch"] for e in epochs] == [1, 2, 3]
    assert all(e["stats"]["mean_sv"] > 0 and e["metrics"]["val_acc"] is not None for e in epochs)
    worker = done["worker"]
    assert worker["host"] and worker["device"] == "cpu" and worker["device_name"] and worker["pid"] > 0
    assert worker["torch"]  # and "cuda", the CUDA version, on CUDA builds of torch
    reader.join(timeout=30)
    assert not reader.is_alive(), "the SSE stream did not end after the run finished"
    streamed = [e["data"]["epoch"] for e in seen if e["event"] == "epoch"]
    assert streamed == [1, 2, 3]
    statuses = [e["data"]["status"] for e in seen if e["event"] == "status"]
    assert statuses[-1] == "succeeded" and "running" in statuses


@team
def test_cancel_at_epoch_two_stops_within_one_epoch_and_fences_writes(redis_stack: Stack) -> None:
    [run] = redis_stack.submit(SLOW_SPEC | {"epochs": 60})
    redis_stack.wait_epoch(run["id"], 2)
    response = redis_stack.http.post(f"/api/v1/runs/{run['id']}/cancel")
    assert response.status_code == 200 and response.json()["cancel_requested"] is True
    at_cancel = response.json()["last_epoch"]
    done = redis_stack.wait_status(run["id"], {"cancelled", "succeeded", "failed"}, timeout=60)
    assert done["status"] == "cancelled"
    # The flag is read before every epoch: only the epoch in progress at the cancel completes.
    assert 2 <= at_cancel <= done["last_epoch"] <= at_cancel + 1, (at_cancel, done["last_epoch"])
    assert_invariants(redis_stack, done, final="cancelled")
    late = redis_stack.worker_http.put(
        f"/api/v1/runs/{run['id']}/epochs/{done['last_epoch'] + 1}",
        json={"attempt": done["attempt"], "metrics": {}},
    )
    assert late.status_code == 409, late.text


@team
def test_cancel_queued_run_never_starts(redis_stack: Stack) -> None:
    blocker, queued = redis_stack.submit(SLOW_SPEC, seeds=[1, 2])
    redis_stack.wait_status(blocker["id"], {"running"})
    response = redis_stack.http.post(f"/api/v1/runs/{queued['id']}/cancel")
    assert response.status_code == 200 and response.json()["status"] == "cancelled"
    redis_stack.wait_status(blocker["id"], {"succeeded"})
    after = redis_stack.run(queued["id"])
    assert after["status"] == "cancelled" and after["attempt"] == 0 and after["started_at"] is None


def test_up_serves_and_trains_on_sqlite_broker_and_stops_on_sigterm(tmp_path: Any) -> None:
    port = free_port()
    stack = Stack(tmp_path)  # only for its environment, tokens and API helpers
    stack.url = f"http://127.0.0.1:{port}"
    stack.http.base_url = httpx.URL(stack.url)
    stack.worker_http.base_url = httpx.URL(stack.url)
    log = open(tmp_path / "up.log", "ab")  # noqa: SIM115
    up = subprocess.Popen(
        [sys.executable, "-m", "collapsewatch.cli", "up", "--port", str(port), "--gpus", "none"],
        env=stack.env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    try:
        wait_for(lambda: _healthy(stack.url), timeout=60, what="collapsewatch up")
        assert stack.env["BROKER_URL"].startswith("sqla+sqlite:///")
        [run] = stack.submit({"epochs": 2})
        done = stack.wait_status(run["id"], {"succeeded", "failed"})
        assert_invariants(stack, done)
        child = done["worker"]["pid"]
        os.kill(up.pid, signal.SIGTERM)
        assert up.wait(timeout=60) == 0
        wait_for(lambda: not _alive(child), timeout=30, what="the embedded worker to stop")
        assert "collapsewatch is up at" in (tmp_path / "up.log").read_text()
    finally:
        stop(up)
        stack.close()


def _healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
