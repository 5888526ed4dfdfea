"""Mixed load on a real uvicorn server: workers pushing epochs while browsers watch, for a fixed time.

    python -m bench.load [--seconds 60] [--db sqlite|postgres|both] [--workers 8] [--browsers 20]

- 8 simulated workers (worker token), each on its own run: ``PUT /api/v1/runs/{id}/epochs/{n}`` with
  realistic collapse statistics (128 singular values, 128 dim stds, a 64-bin histogram, 10 metrics)
  every ``--epoch-interval`` s (default 1 s, already denser than real training; 0.1 s is a stress
  run), each worker at its own random phase within the interval, a ``POST .../heartbeat`` every
  10 epochs and a ``POST .../metrics`` batch of 100 SDK points.
- 20 simulated browsers (cookie session, local mode), opening at random moments in the first 5 s:
  each holds an SSE stream on one run (``/api/v1/runs/{id}/events``), fetches
  ``GET /api/v1/series`` (4 runs, mean_sv) every second and the compare page of 4 runs every 5 s.
- ``--lockstep``: the worst case, all workers push in the same instant and all browsers open
  within 2 s (so every compare page of a 5-second cycle is loaded in one burst).
- A bounded asyncio client on 127.0.0.1; the server is a subprocess on a fresh SQLite file or a fresh
  PostgreSQL database on 127.0.0.1:5432 (created and dropped). After ``--warmup`` s (browsers sign
  in, pools fill; errors still count) prints, per operation: count, throughput, p50/p99/max latency
  and errors; the slowest requests with their time; SSE events received. Target: zero errors and
  epoch PUT p99 < 100 ms on PostgreSQL.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from bench.ingest import epoch_body
from bench.pgscratch import scratch_database
from tests.queue.harness import Stack, spawn, wait_for

PG_ADMIN_URL = os.environ.get("TEST_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/test")
PUT_P99_TARGET_MS = 100.0


@dataclass
class Stats:
    """Latencies (s) per operation, error counts and a few error samples."""

    latency: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    errors: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    samples: list[str] = field(default_factory=list)
    sse_events: int = 0
    slowest: list[tuple[float, str, float]] = field(default_factory=list)  # (latency, op, at)
    t0: float = field(default_factory=time.perf_counter)
    warmup_s: float = 0.0  # latencies of requests started earlier are not kept (errors always count)

    def record(self, op: str, started: float, response: httpx.Response | None, error: str = "") -> None:
        took = time.perf_counter() - started
        if started - self.t0 >= self.warmup_s:
            self.latency[op].append(took)
            self.slowest = sorted([*self.slowest, (took, op, started - self.t0)], reverse=True)[:5]
        if response is not None and response.status_code < 400:
            return
        self.errors[op] += 1
        if len(self.samples) < 10:
            self.samples.append(f"{op}: {error or f'{response.status_code} {response.text[:200]}'}")  # type: ignore[union-attr]


class LoadStack(Stack):
    """The queue tests' stack, with a quiet server (no access log) for timing."""

    def start_server(self) -> None:
        argv = [sys.executable, "-m", "uvicorn", "app.main:app", "--host", "127.0.0.1",
                "--port", str(self.port), "--no-access-log", "--log-level", "warning"]  # fmt: skip
        self.server = spawn(argv, env=self.env, log=self.root / "server.log")
        wait_for(self._healthy, timeout=60, what=f"the server at {self.url}")


@contextmanager
def database(kind: str, root: Path, admin_url: str = PG_ADMIN_URL) -> Iterator[str]:
    """A fresh SQLite file, or a fresh PostgreSQL database (dropped afterwards)."""
    if kind == "sqlite":
        yield f"sqlite:///{root / 'load.db'}"
        return
    with scratch_database(admin_url, "cw_load") as url:
        yield url


def make_stack(root: Path, database_url: str, **settings: Any) -> LoadStack:
    # the queue tests' 6 s lease is shorter than a heartbeat every 10 epochs: SDK runs would crash
    settings = {"lease_seconds": 60} | settings
    return LoadStack(root, database_url=database_url, local_autologin="true", **settings)


# A reused connection that the server closes after its 5 s keep-alive (uvicorn's default) at the
# moment the client sends on it reads as "Server disconnected": a browser retries that silently, an
# httpx client does not. Clients drop idle connections well before the server does.
LIMITS = httpx.Limits(keepalive_expiry=2.0)


async def _call(stats: Stats, op: str, client: httpx.AsyncClient, method: str, url: str, **kw: Any) -> Any:
    started = time.perf_counter()
    try:
        response = await client.request(method, url, **kw)
    except httpx.HTTPError as exc:
        stats.record(op, started, None, f"{type(exc).__name__}: {exc}")
        return None
    stats.record(op, started, response)
    return response


async def worker(
    url: str, token: str, run_id: int, end: float, interval: float, stats: Stats, *, lockstep: bool = False
) -> int:
    """Push epochs 1, 2, ... until ``end``; returns the last epoch acknowledged."""
    rng = random.Random(run_id)
    headers = {"Authorization": f"Bearer {token}"}
    last = 0
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=30, limits=LIMITS) as client:
        epoch = 0
        # Independent workers: each starts at its own moment within the interval and keeps its own
        # cadence (real training runs' epoch boundaries are not in step with each other's).
        due = time.monotonic() + (0.0 if lockstep else rng.uniform(0, interval))
        while due < end:
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            due += interval
            epoch += 1
            body = epoch_body(rng, run_id, epoch)
            del body["_run"], body["_epoch"]  # the bench's bookkeeping, not part of the wire body
            response = await _call(
                stats, "epoch PUT", client, "PUT", f"/api/v1/runs/{run_id}/epochs/{epoch}", json=body
            )
            if response is not None and response.status_code == 200:
                last = epoch
            if epoch % 10 == 0:
                await _call(
                    stats,
                    "heartbeat",
                    client,
                    "POST",
                    f"/api/v1/runs/{run_id}/heartbeat",
                    json={"attempt": 1},
                )
                points = [
                    {"key": "loss", "step": (epoch - 10) * 10 + i, "value": rng.random()} for i in range(100)
                ]
                await _call(stats, "metrics POST", client, "POST", f"/api/v1/runs/{run_id}/metrics",
                            json={"attempt": 1, "points": points})  # fmt: skip
    return last


async def _hold_sse(client: httpx.AsyncClient, run_id: int, stats: Stats) -> None:
    try:
        async with client.stream("GET", f"/api/v1/runs/{run_id}/events") as response:
            if response.status_code != 200:
                stats.errors["SSE open"] += 1
                return
            async for line in response.aiter_lines():
                if line.startswith("event:"):
                    stats.sse_events += 1
    except httpx.HTTPError as exc:
        stats.errors["SSE open"] += 1
        stats.samples.append(f"SSE: {type(exc).__name__}: {exc}")


async def browser(
    url: str, index: int, run_ids: list[int], end: float, stats: Stats, *, lockstep: bool = False
) -> None:
    """Hold an SSE stream, poll the series every second and load the compare page every 5 s.

    Browsers open at random moments within the first 5 s, so their page loads are spread over the
    5-second cycle as real users' are (``lockstep``: all within 2 s, every page load of the cycle in
    one burst, the worst case)."""
    arrival = index * 0.1 if lockstep else random.Random(1000 + index).uniform(0, 5.0)
    await asyncio.sleep(arrival)
    watched = [run_ids[(index + k) % len(run_ids)] for k in range(4)]
    async with httpx.AsyncClient(base_url=url, timeout=httpx.Timeout(30, read=None), limits=LIMITS) as client:
        page = f"/compare?runs={','.join(map(str, watched))}&stat=mean_sv"
        await _call(stats, "compare page", client, "GET", page)  # signs in (local mode): cookie
        sse = asyncio.create_task(_hold_sse(client, watched[0], stats))
        params = [("run", r) for r in watched] + [("key", "mean_sv"), ("max_points", 500)]
        tick = 0
        while time.monotonic() < end:
            await asyncio.sleep(1.0)
            await _call(stats, "series GET", client, "GET", "/api/v1/series", params=params)
            tick += 1
            if tick % 5 == 0:
                await _call(stats, "compare page", client, "GET", page)
        sse.cancel()
        await asyncio.gather(sse, return_exceptions=True)


def create_runs(stack: Stack, count: int, project: str = "load") -> list[int]:
    ids = []
    for i in range(count):
        response = stack.http.post(
            "/api/v1/runs", json={"project": project, "name": f"load-{i}", "config": {"i": i}}
        )
        assert response.status_code == 201, response.text
        ids.append(int(response.json()["id"]))
    return ids


async def drive(
    stack: Stack,
    run_ids: list[int],
    seconds: float,
    interval: float,
    browsers: int,
    warmup: float = 5.0,
    *,
    lockstep: bool = False,
) -> Stats:
    stats = Stats(warmup_s=warmup)
    end = time.monotonic() + warmup + seconds
    tasks: list[Coroutine[Any, Any, object]] = [
        worker(stack.url, stack.worker_token, r, end, interval, stats, lockstep=lockstep) for r in run_ids
    ]
    tasks += [browser(stack.url, b, run_ids, end, stats, lockstep=lockstep) for b in range(browsers)]
    await asyncio.gather(*tasks)
    return stats


def report(label: str, stats: Stats, seconds: float) -> dict[str, Any]:
    print(f"\n== {label}: {seconds:.0f} s")
    print(f"{'operation':<14}{'count':>8}{'per s':>9}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}{'errors':>8}")
    summary: dict[str, Any] = {"errors": sum(stats.errors.values()), "sse_events": stats.sse_events}
    for op in sorted(stats.latency):
        ms = np.array(stats.latency[op]) * 1000
        p50, p99 = float(np.percentile(ms, 50)), float(np.percentile(ms, 99))
        summary[op] = {"count": len(ms), "p50": p50, "p99": p99}
        rate = len(ms) / seconds
        print(f"{op:<14}{len(ms):>8}{rate:>9.1f}{p50:>9.1f}{p99:>9.1f}{ms.max():>9.1f}{stats.errors[op]:>8}")
    nonzero = {op: n for op, n in stats.errors.items() if n}
    print(f"SSE events received: {stats.sse_events}; errors: {summary['errors']} {nonzero or ''}")
    slow = ", ".join(f"{op} {took * 1000:.0f} ms at +{at:.1f} s" for took, op, at in stats.slowest)
    print(f"slowest: {slow}")
    for sample in stats.samples:
        print(f"  error: {sample}")
    return summary


def peak_rss_mb(pid: int) -> float:
    """The process's peak resident set (``VmHWM`` of /proc/PID/status), in MB; NaN if unreadable."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def run_load(
    kind: str,
    seconds: float,
    workers: int,
    browsers: int,
    interval: float,
    warmup: float = 5.0,
    *,
    lockstep: bool = False,
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix=f"cw-load-{kind}-") as tmp, database(kind, Path(tmp)) as url:
        stack = make_stack(Path(tmp), url)
        try:
            stack.start_server()
            run_ids = create_runs(stack, workers)
            stats = asyncio.run(drive(stack, run_ids, seconds, interval, browsers, warmup, lockstep=lockstep))
            phases = "in lockstep" if lockstep else "at random phases"
            summary = report(f"{kind}: {workers} workers {phases}, {browsers} browsers", stats, seconds)
            summary["peak_rss_mb"] = peak_rss_mb(stack.server.pid)  # type: ignore[union-attr]
            print(f"web process peak RSS (VmHWM): {summary['peak_rss_mb']:.0f} MB (goal < 300 MB)")
            put = summary.get("epoch PUT", {}).get("p99", float("inf"))
            verdict = "met" if summary["errors"] == 0 and put < PUT_P99_TARGET_MS else "MISSED"
            print(f"target (0 errors, epoch PUT p99 < {PUT_P99_TARGET_MS:.0f} ms): {verdict}")
            return summary
        finally:
            stack.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.load", description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--db", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--browsers", type=int, default=20)
    parser.add_argument("--epoch-interval", type=float, default=1.0, help="seconds between a worker's epochs")
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds of load before timing starts")
    parser.add_argument(
        "--lockstep",
        action="store_true",
        help="workers push at the same moments, browsers load pages in one burst (worst case)",
    )
    args = parser.parse_args(argv)
    kinds = ["sqlite", "postgres"] if args.db == "both" else [args.db]
    failed = False
    for kind in kinds:
        summary = run_load(
            kind,
            args.seconds,
            args.workers,
            args.browsers,
            args.epoch_interval,
            args.warmup,
            lockstep=args.lockstep,
        )
        failed |= summary["errors"] > 0
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
