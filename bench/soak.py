"""Soak: the ``bench.load`` mix for a long time while real Celery workers train jobs and one of them
is SIGKILLed every few minutes; then the invariants and the server's memory are checked.

    python -m bench.soak [--minutes 30] [--db postgres|sqlite] [--kill-every 180] [--workers 2]

During the run: 8 simulated SDK workers push epochs and 20 browsers hold SSE streams and fetch the
series and compare page (``bench.load``), while a feeder keeps ``--workers`` small training jobs in
flight on real workers (``collapsewatch worker``) and a killer SIGKILLs a random worker every
``--kill-every`` s and starts a replacement (the reaper re-queues its run; the next attempt resumes
from the checkpoint). Short leases (10 s) so that recovery happens within the run.

Afterwards (every job is waited for): no lost run (each ends succeeded, or failed with a reason
after max attempts), no duplicate (run, epoch), attempts <= max_attempts, a write from a stale
attempt is refused (409), and the server's RSS grew by at most 20% from the end of the warm-up to the
end. Exit status 1 if anything fails. ``make soak`` runs the 30-minute version (not in CI).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import signal
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

from bench.load import create_runs, database, drive, make_stack, report
from tests.queue.harness import SLOW_SPEC, Stack, kill_group

RSS_GROWTH_LIMIT = 0.20
TERMINAL = {"succeeded", "failed", "cancelled"}
JOB_SPEC = SLOW_SPEC | {"epochs": 8}


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


class Chaos:
    """Keeps jobs in flight, kills workers, samples the server's memory (background threads)."""

    def __init__(self, stack: Stack, *, workers: int, kill_every: float, warmup_s: float) -> None:
        self.stack, self.workers, self.kill_every, self.warmup_s = stack, workers, kill_every, warmup_s
        self.jobs: list[int] = []
        self.kills = 0
        self.rss: list[tuple[float, int]] = []
        self.errors: list[str] = []
        self.stop = threading.Event()
        self.rng = random.Random(0)

    def start(self) -> list[threading.Thread]:
        threads = [threading.Thread(target=fn, daemon=True) for fn in (self._feed, self._kill, self._sample)]
        for thread in threads:
            thread.start()
        return threads

    def _guard(self, what: str, fn: Any) -> None:
        try:
            fn()
        except Exception as exc:  # noted, the soak goes on
            self.errors.append(f"{what}: {type(exc).__name__}: {exc}")

    def _feed(self) -> None:
        while not self.stop.wait(2.0):
            self._guard("feed", self._feed_once)

    def _feed_once(self) -> None:
        active = self.stack.http.get("/api/v1/runs", params={"status": ["queued", "running"], "kind": "job"})
        if int(active.headers.get("X-Total-Count", "0")) < self.workers:
            self.jobs += [run["id"] for run in self.stack.submit(JOB_SPEC, project="soak")]

    def _kill(self) -> None:
        while not self.stop.wait(self.kill_every):
            self._guard("kill", self._kill_once)

    def _kill_once(self) -> None:
        alive = [proc for proc in self.stack.workers if proc.poll() is None]
        if alive:
            victim = self.rng.choice(alive)
            kill_group(victim, signal.SIGKILL)
            victim.wait(10)
            self.kills += 1
        self.stack.start_worker()

    def _sample(self) -> None:
        assert self.stack.server is not None
        started = time.monotonic()
        while not self.stop.wait(5.0):
            self._guard(
                "rss", lambda: self.rss.append((time.monotonic() - started, rss_kib(self.stack.server.pid)))
            )

    def trajectory(self, points: int = 7) -> str:
        """RSS at evenly spaced moments, to tell a plateau (bounded caches filling) from a leak."""
        if not self.rss:
            return "-"
        picks = [self.rss[round(i * (len(self.rss) - 1) / (points - 1))] for i in range(points)]
        return ", ".join(f"{at / 60:.0f} min {kib / 1024:.0f}" for at, kib in picks)

    def growth(self) -> tuple[int, int, float]:
        after_warmup = [kib for at, kib in self.rss if at >= self.warmup_s] or [kib for _, kib in self.rss]
        base, last = after_warmup[0], self.rss[-1][1]
        return base, last, last / base - 1


def check_runs(stack: Stack, run_ids: list[int]) -> tuple[list[str], Counter[str]]:
    """The invariants of every job run: (violations, outcome counts)."""
    problems: list[str] = []
    outcomes: Counter[str] = Counter()
    for run_id in run_ids:
        run = stack.run(run_id)
        outcomes[f"{run['status']} (attempt {run['attempt']})"] += 1
        if run["status"] not in TERMINAL or (run["status"] == "failed" and not run["error"]):
            problems.append(f"run {run_id} lost: {run['status']} {run['error']!r}")
        if not 1 <= run["attempt"] <= run["max_attempts"]:
            problems.append(f"run {run_id}: attempt {run['attempt']} of {run['max_attempts']}")
        numbers = [e["epoch"] for e in stack.epochs(run_id)]
        if numbers != sorted(set(numbers)):
            problems.append(f"run {run_id}: duplicate epochs {numbers}")
        if run["status"] == "succeeded" and numbers != list(range(1, run["config"]["epochs"] + 1)):
            problems.append(f"run {run_id}: epochs {numbers}")
        stale = stack.worker_http.put(
            f"/api/v1/runs/{run_id}/epochs/1", json={"attempt": max(1, run["attempt"] - 1), "metrics": {}}
        )
        if stale.status_code != 409:
            problems.append(f"run {run_id}: stale write got {stale.status_code}")
    return problems, outcomes


def wait_terminal(stack: Stack, run_ids: list[int], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    for run_id in run_ids:
        while stack.run(run_id)["status"] not in TERMINAL and time.monotonic() < deadline:
            time.sleep(1.0)


def soak(kind: str, minutes: float, workers: int, kill_every: float, browsers: int) -> int:
    seconds = minutes * 60
    warmup = min(60.0, seconds / 10)
    settings = {"lease_seconds": 10, "heartbeat_seconds": 2, "maintenance_interval_seconds": 1,
                "sweep_after_seconds": 10}  # fmt: skip
    with tempfile.TemporaryDirectory(prefix=f"cw-soak-{kind}-") as tmp, database(kind, Path(tmp)) as url:
        stack = make_stack(Path(tmp), url, **settings)
        chaos = Chaos(stack, workers=workers, kill_every=kill_every, warmup_s=warmup)
        try:
            stack.start_server()
            for _ in range(workers):
                stack.start_worker()
            sdk_runs = create_runs(stack, 8)
            threads = chaos.start()
            stats = asyncio.run(drive(stack, sdk_runs, seconds, 1.0, browsers, warmup))
            chaos.stop.set()
            for thread in threads:
                thread.join(60)
            load = report(
                f"soak {kind}: {minutes:g} min, {workers} workers, a kill every {kill_every:g} s",
                stats,
                seconds,
            )
            wait_terminal(stack, chaos.jobs, timeout=600)
            problems, outcomes = check_runs(stack, chaos.jobs)
            base, last, growth = chaos.growth()
        finally:
            stack.close()
    print(f"jobs: {len(chaos.jobs)} submitted, {chaos.kills} workers killed; outcomes: {dict(outcomes)}")
    print(f"invariants: {'all hold' if not problems else f'{len(problems)} VIOLATED'}")
    for problem in problems[:20]:
        print(f"  {problem}")
    mib = f"{base / 1024:.1f} MiB after warm-up -> {last / 1024:.1f} MiB at the end"
    print(f"server RSS: {mib} ({growth:+.1%}; limit +{RSS_GROWTH_LIMIT:.0%})")
    print(f"server RSS over time (MiB): {chaos.trajectory()}")
    for error in chaos.errors[:10]:
        print(f"  chaos error: {error}")
    ok = not problems and growth <= RSS_GROWTH_LIMIT and load["errors"] == 0 and not chaos.errors
    print(f"soak: {'PASSED' if ok else 'FAILED'}")
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--db", choices=["postgres", "sqlite"], default="postgres")
    parser.add_argument("--workers", type=int, default=2, help="real Celery workers training jobs")
    parser.add_argument("--kill-every", type=float, default=180.0, help="seconds between worker kills")
    parser.add_argument("--browsers", type=int, default=20)
    args = parser.parse_args(argv)
    return soak(args.db, args.minutes, args.workers, args.kill_every, args.browsers)


if __name__ == "__main__":
    sys.exit(main())
