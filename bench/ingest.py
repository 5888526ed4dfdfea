"""Ingestion (and series-query) throughput of a real uvicorn server against a plain insert loop into
the same database, on SQLite and PostgreSQL (issue 19).

    python -m bench.ingest [--quick] [--repeats 3] [--backend sqlite|postgres|both] [--pg-admin-url URL]

Each repeat, on runs of its own (fresh database tables for the loop):

- scalars: ``runs`` SDK runs x ``steps`` steps of one scalar via ``POST /api/v1/runs/{id}/metrics``,
  1,000 points per request, one sequential client, a NEW TCP connection for every request
  (``http.client``, ``Connection: close``), against the loop (``bench.ingest_loop``): ``executemany``
  of the same 1,000 rows and a commit, into ``bl_metrics`` of the same database.
- epochs: ``runs`` x ``epochs`` ``PUT /api/v1/runs/{id}/epochs/{n}`` with full statistics at d = 128
  (128 singular values, 128 dim stds, the 64-bin histogram, 8 scalar metrics), fresh connection
  each, against one INSERT + commit per epoch.

Request bodies and loop rows are built before the clock starts (what is timed is the store's work,
plus HTTP for the API). The table shows the median of the repeats and the ratio API / loop (the
median of each repeat's ratio: each pair ran back to back). After the repeats, once: ``GET
/api/v1/series`` over the last repeat's runs, downsampled to 1,000 points, against fetching every
point and downsampling in Python.

The server imports this checkout (``BENCH_SERVER_ROOT=/path/to/other/checkout`` times another one,
e.g. the code before a change, under the same load; the loop and the client stay the same).

Targets (issue 19): scalars >= 150,000 points/s and >= 25% of the loop on SQLite, >= 25% of the loop
on PostgreSQL; epochs >= 400/s on SQLite, >= 25% of the loop on PostgreSQL. Wall times depend on the
machine's load (client, server and database share it); the "server CPU" rows (uvicorn process plus,
on PostgreSQL, the bench database's backends, from /proc) do not.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from bench import ingest_loop
from bench.pgscratch import scratch_database
from collapsewatch.stats import DEFAULT_HIST_EDGES

# the checkout the server imports: this one, or another to time it on the same load (e.g. before a change)
REPO = Path(os.environ.get("BENCH_SERVER_ROOT") or Path(__file__).resolve().parents[1])
PG_ADMIN_URL = os.environ.get("TEST_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/test")
METRIC_KEYS = ["train_loss", "val_acc", "knn_acc", "recall_at_1", "lr", "seconds", "m0", "m1"]
DIMS = 128
BATCH = 1000
SCALAR_TARGET, SCALAR_RATIO_TARGET, EPOCH_TARGET, EPOCH_RATIO_TARGET = 150_000, 0.25, 400, 0.25


@dataclass(frozen=True)
class Workload:
    runs: int
    epochs: int
    steps: int
    series_repeats: int


FULL = Workload(runs=20, epochs=50, steps=10_000, series_repeats=30)
QUICK = Workload(runs=4, epochs=25, steps=2_000, series_repeats=10)


@dataclass
class Row:
    backend: str
    measure: str
    value: float
    unit: str
    baseline: float | None = None
    ratio: float | None = None
    target: str = ""
    verdict: str = ""


def epoch_body(rng: random.Random, run: int, epoch: int) -> dict[str, Any]:
    svs = sorted((rng.uniform(0.01, 3.0) for _ in range(DIMS)), reverse=True)
    dim_std = [rng.uniform(0.0, 1.5) for _ in range(DIMS)]
    edges = list(DEFAULT_HIST_EDGES)
    counts = np.histogram(np.clip(dim_std, edges[0], edges[-1]), bins=edges)[0].tolist()
    stats = {
        "mean_sv": sum(svs) / DIMS, "sv_lower": 0.0884, "sv_upper": 1.0, "sv_position": rng.random(),
        "singular_values": svs, "effective_rank": rng.uniform(1, DIMS), "dim_std": dim_std,
        "std_hist": {"edges": edges, "counts": counts},
        "dead_dims": sum(s < 1e-3 for s in dim_std), "cov_offdiag": rng.random(), "l2_std": rng.random() / 10,
    }  # fmt: skip
    return {"attempt": 1, "metrics": {k: rng.random() for k in METRIC_KEYS}, "stats": stats, "_run": run,
            "_epoch": epoch}  # fmt: skip


def epoch_bodies(work: Workload, seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)  # runs progress together, as parallel jobs would
    return [epoch_body(rng, run, epoch) for epoch in range(work.epochs) for run in range(work.runs)]


def metric_batches(runs: list[int], steps: int) -> list[tuple[int, list[dict[str, Any]]]]:
    rng = random.Random(1)
    out = []
    for run in runs:
        for start in range(0, steps, BATCH):
            span = range(start, min(steps, start + BATCH))
            out.append(
                (
                    run,
                    [{"key": "loss", "step": s, "value": rng.gauss(1.0 / (1 + s / 500), 0.05)} for s in span],
                )
            )
    return out


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def server(database_url: str, workdir: Path) -> Iterator[tuple[str, int]]:
    """``uvicorn app.main:app`` in a subprocess on a free port; yields its base URL and pid."""
    port = free_port()
    own = ("REDIS_URL", "BROKER_URL", "DATABASE_URL")
    env = {k: v for k, v in os.environ.items() if k.removeprefix("COLLAPSEWATCH_") not in own}
    env |= {
        "COLLAPSEWATCH_DATABASE_URL": database_url,
        "COLLAPSEWATCH_BROKER_URL": f"sqla+sqlite:///{workdir / 'broker.db'}",
        "COLLAPSEWATCH_ARTIFACT_DIR": str(workdir / "artifacts"),
        "COLLAPSEWATCH_SECRET_KEY": "bench",
        "COLLAPSEWATCH_API_RATE_LIMIT_PER_SECOND": "0",  # raw ingestion: one token flat out
        # the server runs in workdir: put this checkout first, not whatever ``app`` is installed
        "PYTHONPATH": os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]),
    }
    cmd = [sys.executable, "-m", "uvicorn", "app.main:app", "--host", "127.0.0.1", "--port", str(port)]
    proc = subprocess.Popen([*cmd, "--log-level", "warning", "--no-access-log"], env=env, cwd=workdir)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the server did not start (exit code {proc.poll()})")
            time.sleep(0.1)
        yield url, proc.pid
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()


def tokens(database_url: str) -> tuple[str, str]:
    """A user and a worker token, created with the app's token service."""
    from app.auth.api_tokens import create_token, ensure_admin
    from app.db import Database
    from app.settings import Settings

    db = Database(Settings(database_url=database_url, _env_file=None))
    try:
        with db.transaction() as session:
            admin = ensure_admin(session=session, email="admin@localhost")
            user = create_token(session=session, user=admin, name="bench").token
            worker = create_token(session=session, user=admin, name="bench-w", kind="worker").token
    finally:
        db.dispose()
    return user, worker


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of these processes (Linux /proc), 0 for any that is gone."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    return total / os.sysconf("SC_CLK_TCK")


def pg_backends(database_url: str) -> Callable[[], list[int]]:
    """The pids of the PostgreSQL backends serving ``database_url``'s database (none for SQLite)."""
    if not database_url.startswith("postgresql"):
        return list
    import psycopg

    url = database_url.replace("postgresql+psycopg://", "postgresql://", 1)

    def pids() -> list[int]:
        with psycopg.connect(url, autocommit=True) as conn:
            query = "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
            rows = conn.execute(query + " AND pid <> pg_backend_pid()").fetchall()
        return [int(r[0]) for r in rows]

    return pids


class Fresh:
    """One request per new TCP connection (``Connection: close``), as a script that opens its own."""

    def __init__(self, url: str, token: str) -> None:
        self.host, port = url.removeprefix("http://").split(":")
        self.port = int(port)
        self.headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json",
                        "Connection": "close"}  # fmt: skip

    def send(self, method: str, path: str, body: bytes) -> bytes:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=60)
        try:
            conn.request(method, path, body=body, headers=self.headers)
            response = conn.getresponse()
            data = response.read()
            if response.status >= 300:
                raise RuntimeError(f"{method} {path}: {response.status} {data[:300]!r}")
            return data
        finally:
            conn.close()


def new_runs(url: str, user: str, count: int, tag: str) -> list[int]:
    with httpx.Client(base_url=url, timeout=60, headers={"Authorization": f"Bearer {user}"}) as http:
        ids = []
        for i in range(count):
            response = http.post("/api/v1/runs", json={"project": "bench", "name": f"{tag}-{i}"})
            response.raise_for_status()
            ids.append(int(response.json()["id"]))
    return ids


def timed(
    requests: list[tuple[str, str, bytes]], client: Fresh, cpu: Callable[[], float]
) -> tuple[float, float]:
    """Wall seconds and server CPU seconds of sending ``requests`` in order."""
    cpu0, start = cpu(), time.perf_counter()
    for method, path, body in requests:
        client.send(method, path, body)
    return time.perf_counter() - start, cpu() - cpu0


@dataclass
class Repeat:
    scalar_s: float
    scalar_cpu: float
    scalar_loop_s: float
    epoch_s: float
    epoch_cpu: float
    epoch_loop_s: float


def one_repeat(i: int, url: str, user: str, worker: str, work: Workload, loop: Callable[[], Any],
               sqlite: bool, cpu: Callable[[], float]) -> tuple[Repeat, list[int]]:  # fmt: skip
    runs = new_runs(url, user, work.runs, f"r{i}")
    batches = metric_batches(runs, work.steps)
    scalar_requests = [
        ("POST", f"/api/v1/runs/{run}/metrics", json.dumps({"attempt": 1, "points": batch}).encode())
        for run, batch in batches
    ]
    scalar_s, scalar_cpu = timed(scalar_requests, Fresh(url, user), cpu)
    scalar_loop_s = ingest_loop.metric_loop(loop, sqlite, batches)
    bodies = epoch_bodies(work, seed=i)
    epoch_requests = [
        ("PUT", f"/api/v1/runs/{runs[b['_run']]}/epochs/{b['_epoch']}",
         json.dumps({k: v for k, v in b.items() if not k.startswith("_")}).encode())
        for b in bodies
    ]  # fmt: skip
    epoch_s, epoch_cpu = timed(epoch_requests, Fresh(url, worker), cpu)
    epoch_loop_s = ingest_loop.epoch_loop(loop, sqlite, bodies)
    return Repeat(scalar_s, scalar_cpu, scalar_loop_s, epoch_s, epoch_cpu, epoch_loop_s), runs


def series(
    url: str, user: str, runs: list[int], work: Workload, loop: Callable[[], Any], sqlite: bool
) -> list[float]:
    """Cold p50 of ``GET /api/v1/series`` (a distinct max_points each time: no cached body) and the loop's."""
    samples = []
    params: dict[str, Any] = {"run": runs, "key": "loss"}
    with httpx.Client(base_url=url, timeout=60, headers={"Authorization": f"Bearer {user}"}) as http:
        for i in range(work.series_repeats + 2):
            t0 = time.perf_counter()
            http.get("/api/v1/series", params=params | {"max_points": 1000 - i}).raise_for_status()
            if i >= 2:
                samples.append(time.perf_counter() - t0)
    ingest_loop.metric_loop(loop, sqlite, metric_batches(runs, work.steps))  # the loop's table, same points
    base = ingest_loop.series_loop(loop, sqlite, work.steps, max(3, work.series_repeats // 3))
    return [1000 * statistics.median(samples), 1000 * statistics.median(base)]


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def bench_backend(name: str, database_url: str, loop: Callable[[], Any], work: Workload, repeats: int,
                  workdir: Path) -> list[Row]:  # fmt: skip
    sqlite = name == "sqlite"
    reps: list[Repeat] = []
    with server(database_url, workdir) as (url, pid):
        user, worker = tokens(database_url)
        backends = pg_backends(database_url)
        cpu = lambda: cpu_seconds([pid, *backends()])  # noqa: E731
        for i in range(repeats):
            rep, runs = one_repeat(i, url, user, worker, work, loop, sqlite, cpu)
            reps.append(rep)
            print(f"# {name} repeat {i + 1}: {rep}", file=sys.stderr, flush=True)
        series_ms, series_loop_ms = series(url, user, runs, work, loop, sqlite)
    med = statistics.median
    points, epochs = work.runs * work.steps, work.runs * work.epochs
    scalar, scalar_loop = med(points / r.scalar_s for r in reps), med(points / r.scalar_loop_s for r in reps)
    scalar_ratio = med(r.scalar_loop_s / r.scalar_s for r in reps)
    epoch, epoch_loop = med(epochs / r.epoch_s for r in reps), med(epochs / r.epoch_loop_s for r in reps)
    epoch_ratio = med(r.epoch_loop_s / r.epoch_s for r in reps)
    scalar_ok = scalar_ratio >= SCALAR_RATIO_TARGET and (not sqlite or scalar >= SCALAR_TARGET)
    scalar_goal = (f">= {SCALAR_TARGET:,} & " if sqlite else "") + f">= {SCALAR_RATIO_TARGET:.0%} of loop"
    # issue 19: epochs >= 400/s on SQLite; on PostgreSQL, >= 25% of its own loop
    epoch_ok = epoch >= EPOCH_TARGET if sqlite else epoch_ratio >= EPOCH_RATIO_TARGET
    epoch_goal = f">= {EPOCH_TARGET}" if sqlite else f">= {EPOCH_RATIO_TARGET:.0%} of loop"
    return [
        Row(name, "scalars POST x1000, fresh conn, points/s", scalar, "1/s", scalar_loop, scalar_ratio,
            scalar_goal, verdict(scalar_ok)),
        Row(name, "scalars, server CPU per 1,000 points", 1e6 * med(r.scalar_cpu for r in reps) / points,
            "ms"),
        Row(name, f"epochs PUT d={DIMS}, fresh conn, epochs/s", epoch, "1/s", epoch_loop, epoch_ratio,
            epoch_goal, verdict(epoch_ok)),
        Row(name, "epochs, server CPU per epoch", 1000 * med(r.epoch_cpu for r in reps) / epochs, "ms"),
        Row(name, f"series {work.runs}x{work.steps} -> 1000 pts, cold p50", series_ms, "ms", series_loop_ms,
            None, "< 100", verdict(series_ms < 100)),
    ]  # fmt: skip


def print_table(rows: list[Row], repeats: int) -> None:
    head = (f"{'backend':<9} {'measure (median of ' + str(repeats) + ')':<44} {'value':>12} {'unit':<4} "
            f"{'loop':>12} {'ratio':>6}  target")  # fmt: skip
    print(head)
    print("-" * len(head))
    for r in rows:
        base = f"{r.baseline:12,.1f}" if r.baseline is not None else " " * 12
        ratio = f"{r.ratio:6.0%}" if r.ratio is not None else " " * 6
        value = f"{r.value:12,.1f}"
        print(f"{r.backend:<9} {r.measure:<44} {value} {r.unit:<4} {base} {ratio}  {r.target} {r.verdict}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small workload (smoke test)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--pg-admin-url", default=PG_ADMIN_URL)
    args = parser.parse_args(argv)
    work = QUICK if args.quick else FULL
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="cw-bench-") as tmp:
        workdir = Path(tmp)
        if args.backend in ("sqlite", "both"):
            path = workdir / "bench.db"

            def sqlite_connect() -> sqlite3.Connection:  # the server's database file, its pragmas
                conn = sqlite3.connect(path)
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")
                return conn

            rows += bench_backend("sqlite", f"sqlite:///{path}", sqlite_connect, work, args.repeats, workdir)
        if args.backend in ("postgres", "both"):
            import psycopg

            with scratch_database(args.pg_admin_url, "cw_bench") as url:
                libpq_url = url.replace("postgresql+psycopg://", "postgresql://", 1)
                rows += bench_backend("postgres", url, lambda: psycopg.connect(libpq_url), work, args.repeats,
                                      workdir)  # fmt: skip
    print(f"load average at the end: {os.getloadavg()[0]:.2f} (cpus: {os.cpu_count()})")
    print_table(rows, args.repeats)
    return 0


if __name__ == "__main__":
    sys.exit(main())
