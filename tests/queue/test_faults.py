"""Fault injection with real processes. Invariants everywhere: no run lost, no duplicate
(run, epoch), attempts <= max, and no write from a stale attempt accepted (``assert_invariants``)."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from app.jobs.queue import JobQueue
from tests.queue.harness import (
    SLOW_SPEC,
    TINY_SPEC,
    RedisServer,
    Stack,
    assert_invariants,
    comparable,
    kill_group,
    wait_for,
)

pytestmark = pytest.mark.slow


def test_sigkill_child_mid_run_resumes_from_checkpoint_with_identical_numbers(sqlite_stack: Stack) -> None:
    stack = sqlite_stack
    stack.start_worker()
    spec = SLOW_SPEC | {"seed": 7, "epochs": 12}
    [reference] = stack.submit(spec)
    reference = stack.wait_status(reference["id"], {"succeeded", "failed"})
    expected = [comparable(e) for e in assert_invariants(stack, reference)]

    [run] = stack.submit(spec)
    running = stack.wait_epoch(run["id"], 3)
    assert running["last_epoch"] < spec["epochs"], "the run finished before it could be interrupted"
    os.kill(running["worker"]["pid"], signal.SIGKILL)  # the pool child, not the worker
    done = stack.wait_status(run["id"], {"succeeded", "failed"}, timeout=120)

    epochs = assert_invariants(stack, done)
    assert done["attempt"] == 2
    assert [comparable(e) for e in epochs] == expected
    resumed = [line for line in stack.log_lines(run["id"]) if line.startswith("attempt 2 ")]
    assert len(resumed) == 1 and "resuming after epoch" in resumed[0], resumed


def test_sigkill_whole_worker_then_new_worker_recovers_every_run(sqlite_stack: Stack) -> None:
    stack = sqlite_stack
    first = stack.start_worker()
    runs = stack.submit(SLOW_SPEC, seeds=[1, 2])
    stack.wait_epoch(runs[0]["id"], 2)
    kill_group(first)  # the parent and its pool child; the second message may die with them
    first.wait(10)
    stack.start_worker()
    for run in runs:
        done = stack.wait_status(run["id"], {"succeeded", "failed"}, timeout=150)
        assert_invariants(stack, done)
    assert stack.run(runs[0]["id"])["attempt"] == 2  # the reaper re-queued the interrupted attempt


@pytest.mark.redis
def test_redis_restart_with_jobs_queued_loses_no_run(tmp_path: Path) -> None:
    # A private redis-server (no persistence): restarting the machine's shared Redis would disturb
    # other test sessions. Its restart drops every queued message; the sweeper re-sends them.
    redis = RedisServer(tmp_path)
    redis.start()
    stack = Stack(tmp_path / "stack", broker_url=redis.url)
    try:
        stack.start_server()
        stack.start_worker()
        runs = stack.submit(SLOW_SPEC | {"epochs": 6}, seeds=[1, 2, 3])
        stack.wait_status(runs[0]["id"], {"running"})
        redis.kill()
        redis.start()
        for run in runs:
            done = stack.wait_status(run["id"], {"succeeded", "failed"}, timeout=150)
            assert_invariants(stack, done)
    finally:
        stack.close()
        redis.kill()


@pytest.mark.redis
def test_two_workers_on_one_broker_never_run_the_same_attempt_twice(redis_url: str, tmp_path: Path) -> None:
    stack = Stack(tmp_path, broker_url=redis_url)
    try:
        stack.start_server()
        stack.start_worker()
        stack.start_worker()
        runs = stack.submit(
            TINY_SPEC, sweep={"lr": [0.05, 0.1], "regularizer": ["none", "svmax"]}, seeds=[1, 2]
        )
        assert len(runs) == 8 and len({run["sweep_id"] for run in runs}) == 1 and runs[0]["sweep_id"]
        duplicates = JobQueue(redis_url, queue_prefix=stack.env["QUEUE_PREFIX"])
        for _ in range(2):  # every run delivered three times in all
            for run in runs:
                assert duplicates.send(run["id"], "cpu")
        duplicates.close()
        for run in runs:
            done = stack.wait_status(run["id"], {"succeeded", "failed"})
            assert_invariants(stack, done)
            assert done["attempt"] == 1
            starts = [line for line in stack.log_lines(run["id"]) if line.startswith("attempt ")]
            assert len(starts) == 1, starts
    finally:
        stack.close()


def test_paused_attempt_is_fenced_out_by_the_next_one(sqlite_stack: Stack) -> None:
    stack = sqlite_stack
    stack.start_worker()
    stack.start_worker()
    [run] = stack.submit(SLOW_SPEC | {"epochs": 12})
    first = stack.wait_epoch(run["id"], 2)
    child = first["worker"]["pid"]
    os.kill(child, signal.SIGSTOP)  # alive but silent: its lease expires
    try:
        wait_for(lambda: stack.run(run["id"])["attempt"] == 2, timeout=90, what="attempt 2 to be claimed")
    finally:
        os.kill(child, signal.SIGCONT)  # attempt 1 wakes up and must not write any more
    done = stack.wait_status(run["id"], {"succeeded", "failed"}, timeout=150)
    assert_invariants(stack, done)
    assert done["attempt"] == 2 and done["worker"]["pid"] != child
    fenced = f"run {run['id']} attempt 1 stopped: fenced"

    def logs() -> str:
        return "".join(path.read_text(errors="replace") for path in stack.root.glob("worker*.log"))

    wait_for(lambda: fenced in logs(), timeout=30, what="attempt 1 to notice it was fenced out")
