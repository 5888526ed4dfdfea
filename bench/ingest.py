"""Ingestion and series-query throughput of a real uvicorn server, on SQLite and PostgreSQL.

    python -m bench.ingest [--quick] [--backend sqlite|postgres|both] [--pg-admin-url URL]

Workload (full): 20 SDK runs x 200 epochs, each epoch a ``PUT /api/v1/runs/{id}/epochs/{n}`` with
collapse statistics (128 singular values, dim_std of 128, a 64-bin histogram) and 10 scalar metrics,
sent sequentially over one keep-alive connection; then 20 runs x 10,000 steps of one SDK scalar via
``POST /api/v1/runs/{id}/metrics`` in sequential batches of 1,000; then ``GET /api/v1/series`` over
those 20 runs downsampled to 1,000 points. ``--quick``: 4 runs x 50 epochs, 4 x 2,000 steps.

Baselines, in this process, same rows: a plain loop of direct driver inserts into similar tables
(sqlite3 / psycopg ``executemany``, one commit per epoch or per 1,000 points) and, for the series,
fetching every point and downsampling in Python (``app.series.downsample.downsample``). "Points" of an epoch
are its 18 chartable scalars (10 metrics + 8 statistics). Targets: scalar batches >= 25,000 points/s
on SQLite, epoch PUT p50 < 10 ms, series query < 100 ms.

Wall times depend on what else the machine runs (the client shares it with the server); the "server
CPU" rows (uvicorn process, plus the PostgreSQL backends of the bench database, from /proc) do not.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import socket
import sqlite3
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

from bench.pgscratch import scratch_database

PG_ADMIN_URL = os.environ.get("TEST_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/test")
METRIC_KEYS = ["train_loss", "val_acc", "knn_acc", "recall_at_1", "lr", "seconds", "m0", "m1", "m2", "m3"]
POINTS_PER_EPOCH = len(METRIC_KEYS) + 8
BATCH = 1000


@dataclass(frozen=True)
class Workload:
    runs: int
    epochs: int
    steps: int
    series_repeats: int


FULL = Workload(runs=20, epochs=200, steps=10_000, series_repeats=30)
QUICK = Workload(runs=4, epochs=50, steps=2_000, series_repeats=10)


@dataclass
class Row:
    backend: str
    measure: str
    value: float
    unit: str
    baseline: float | None = None
    target: str = ""

    def ratio(self) -> str:
        if self.baseline is None or self.baseline == 0:
            return ""
        return f"{self.value / self.baseline:.2f}x"


def epoch_body(rng: random.Random, epoch: int) -> dict[str, Any]:
    svs = sorted((rng.uniform(0.01, 3.0) for _ in range(128)), reverse=True)
    dim_std = [rng.uniform(0.0, 1.5) for _ in range(128)]
    counts = [0] * 64
    for s in dim_std:
        counts[min(63, int(s / 2.0 * 64))] += 1
    stats = {
        "mean_sv": sum(svs) / 128, "sv_lower": 0.0884, "sv_upper": 1.0, "sv_position": rng.random(),
        "singular_values": svs, "effective_rank": rng.uniform(1, 128), "dim_std": dim_std,
        "std_hist": {"edges": [i * 2.0 / 64 for i in range(65)], "counts": counts},
        "dead_dims": sum(s < 1e-3 for s in dim_std), "cov_offdiag": rng.random(), "l2_std": rng.random() / 10,
    }  # fmt: skip
    return {"attempt": 1, "metrics": {k: rng.random() for k in METRIC_KEYS}, "stats": stats, "_epoch": epoch}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def server(database_url: str, workdir: Path) -> Iterator[tuple[str, int]]:
    """``uvicorn app.main:app`` in a subprocess on a free port; yields its base URL and pid."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "BROKER_URL", "DATABASE_URL")}
    env |= {
        "DATABASE_URL": database_url,
        "BROKER_URL": f"sqla+sqlite:///{workdir / 'broker.db'}",
        "ARTIFACT_DIR": str(workdir / "artifacts"),
        "SECRET_KEY": "bench",
        "API_RATE_LIMIT_PER_SECOND": "0",  # the bench measures raw ingestion, one token flat out
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

    db = Database(Settings(database_url=database_url, _env_file=None))  # type: ignore[call-arg]
    try:
        with db.transaction() as session:
            admin = ensure_admin(session=session, email="admin@localhost")
            user = create_token(session=session, user=admin, name="bench").token
            worker = create_token(session=session, user=admin, name="bench-w", kind="worker").token
    finally:
        db.dispose()
    return user, worker


def percentile_ms(samples: list[float], q: float) -> float:
    return float(np.percentile(np.array(samples) * 1000, q))


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


def run_api(
    url: str, user: str, worker: str, work: Workload, bodies: list[dict[str, Any]], cpu: Callable[[], float]
) -> dict[str, Any]:
    """Wall times seen by the client, plus the server's CPU time per phase (``cpu``: the uvicorn
    process and, on PostgreSQL, the database's backends), which the machine's load does not inflate."""
    out: dict[str, Any] = {}
    as_user = {"Authorization": f"Bearer {user}"}
    as_worker = {"Authorization": f"Bearer {worker}"}
    with httpx.Client(base_url=url, timeout=60) as http:
        runs = []
        for i in range(work.runs):
            response = http.post("/api/v1/runs", json={"project": "bench", "name": f"r{i}"}, headers=as_user)
            response.raise_for_status()
            runs.append(int(response.json()["id"]))
        latencies: list[float] = []
        cpu0, start = cpu(), time.perf_counter()
        for body in bodies:
            payload = {k: v for k, v in body.items() if not k.startswith("_")}
            run = runs[body["_run"]]
            t0 = time.perf_counter()
            response = http.put(
                f"/api/v1/runs/{run}/epochs/{body['_epoch']}", json=payload, headers=as_worker
            )
            latencies.append(time.perf_counter() - t0)
            response.raise_for_status()
        out["epoch_s"], out["epoch_cpu"] = time.perf_counter() - start, cpu() - cpu0
        out["epoch_p50"], out["epoch_p99"] = percentile_ms(latencies, 50), percentile_ms(latencies, 99)
        cpu0, start = cpu(), time.perf_counter()
        for run, batch in metric_batches(runs, work):
            response = http.post(
                f"/api/v1/runs/{run}/metrics", json={"attempt": 1, "points": batch}, headers=as_user
            )
            response.raise_for_status()
        out["metric_s"], out["metric_cpu"] = time.perf_counter() - start, cpu() - cpu0
        params = {"run": runs, "key": "loss", "max_points": 1000}
        samples = []
        for i in range(work.series_repeats + 2):
            if i == 2:
                cpu0 = cpu()
            t0 = time.perf_counter()
            # cold: a distinct question each time (max_points 1000, 999, ...), so no cached body helps
            response = http.get("/api/v1/series", params=params | {"max_points": 1000 - i}, headers=as_user)
            if i >= 2:
                samples.append(time.perf_counter() - t0)
            response.raise_for_status()
        out["series_p50"], out["series_p99"] = percentile_ms(samples, 50), percentile_ms(samples, 99)
        out["series_cpu"] = (cpu() - cpu0) / work.series_repeats
        series = response.json()
        warm = []
        for _ in range(work.series_repeats):  # the same question again: the cached body
            t0 = time.perf_counter()
            http.get("/api/v1/series", params=params, headers=as_user).raise_for_status()
            warm.append(time.perf_counter() - t0)
        out["warm_p50"] = percentile_ms(warm, 50)
        stat_samples = []  # the common chart: a collapse statistic of every run, one point per epoch
        for i in range(work.series_repeats + 2):
            t0 = time.perf_counter()
            cold = {"key": "mean_sv", "max_points": 1000 - i}  # distinct: not served from the cache
            stat = http.get("/api/v1/series", params=params | cold, headers=as_user)
            if i >= 2:
                stat_samples.append(time.perf_counter() - t0)
            stat.raise_for_status()
        out["stat_p50"] = percentile_ms(stat_samples, 50)
        out["series_points"] = sum(len(s["points"]) for s in series)
    return out


def metric_batches(runs: list[int], work: Workload) -> Iterator[tuple[int, list[dict[str, Any]]]]:
    rng = random.Random(1)
    for run in runs:
        for start in range(0, work.steps, BATCH):
            steps = range(start, min(work.steps, start + BATCH))
            yield (
                run,
                [{"key": "loss", "step": s, "value": rng.gauss(1.0 / (1 + s / 500), 0.05)} for s in steps],
            )


# ---------------------------------------------------------------- baselines: a plain loop, same rows


def baseline(
    connect: Callable[[], Any], placeholder: str, work: Workload, bodies: list[dict[str, Any]]
) -> dict[str, float]:
    conn = connect()
    cur = conn.cursor()
    cur.execute("DROP TABLE IF EXISTS bl_epochs")
    cur.execute("DROP TABLE IF EXISTS bl_metrics")
    cur.execute(
        "CREATE TABLE bl_epochs (id SERIAL PRIMARY KEY, run_id INT, epoch INT, attempt INT, mean_sv FLOAT,"
        " sv_position FLOAT, effective_rank FLOAT, metrics TEXT, std_hist TEXT, singular_values TEXT,"
        " dim_std TEXT, UNIQUE(run_id, epoch))".replace(
            "SERIAL", "INTEGER" if placeholder == "?" else "SERIAL"
        )
    )
    cur.execute(
        "CREATE TABLE bl_metrics (id INTEGER PRIMARY KEY, run_id INT, key VARCHAR(128), step BIGINT,"
        " value FLOAT, attempt INT, UNIQUE(run_id, key, step))".replace(
            "INTEGER PRIMARY KEY", "INTEGER PRIMARY KEY" if placeholder == "?" else "SERIAL PRIMARY KEY"
        )
    )
    conn.commit()
    p = placeholder
    sql = f"INSERT INTO bl_epochs (run_id, epoch, attempt, mean_sv, sv_position, effective_rank, metrics, std_hist, singular_values, dim_std) VALUES ({', '.join([p] * 10)})"  # noqa: E501
    start = time.perf_counter()
    for body in bodies:
        s = body["stats"]
        row = (body["_run"], body["_epoch"], 1, s["mean_sv"], s["sv_position"], s["effective_rank"],
               json.dumps(body["metrics"]), json.dumps(s["std_hist"]), json.dumps(s["singular_values"]),
               json.dumps(s["dim_std"]))  # fmt: skip
        cur.execute(sql, row)
        conn.commit()
    out = {"epoch_s": time.perf_counter() - start}
    sql = f"INSERT INTO bl_metrics (run_id, key, step, value, attempt) VALUES ({p}, {p}, {p}, {p}, {p})"
    start = time.perf_counter()
    for run, batch in metric_batches(list(range(1, work.runs + 1)), work):
        cur.executemany(sql, [(run, b["key"], b["step"], b["value"], 1) for b in batch])
        conn.commit()
    out["metric_s"] = time.perf_counter() - start
    samples = []
    from app.series.downsample import downsample

    for _ in range(max(3, work.series_repeats // 3)):
        t0 = time.perf_counter()
        cur.execute(
            f"SELECT run_id, step, value FROM bl_metrics WHERE key = {p} ORDER BY run_id, step", ("loss",)
        )
        rows = cur.fetchall()
        per_run: dict[int, tuple[list[int], list[float]]] = {}
        for run, step, value in rows:
            xs, ys = per_run.setdefault(run, ([], []))
            xs.append(step)
            ys.append(value)
        for xs, ys in per_run.values():
            downsample(xs, ys, 1000, lo=0, hi=work.steps - 1)
        samples.append(time.perf_counter() - t0)
    out["series_p50"] = percentile_ms(samples, 50)
    conn.close()
    return out


def bench_backend(name: str, database_url: str, connect: Callable[[], Any], placeholder: str, work: Workload,
                  workdir: Path) -> list[Row]:  # fmt: skip
    rng = random.Random(0)
    bodies = []
    for epoch in range(work.epochs):  # runs progress together, as parallel jobs would
        for run in range(work.runs):
            bodies.append(epoch_body(rng, epoch) | {"_run": run})
    with server(database_url, workdir) as (url, pid):
        user, worker = tokens(database_url)
        backends = pg_backends(database_url)
        api = run_api(url, user, worker, work, bodies, lambda: cpu_seconds([pid, *backends()]))
    base = baseline(connect, placeholder, work, bodies)
    n_epochs, n_points = len(bodies), work.runs * work.steps
    scalar_target = ">= 25,000" if name == "sqlite" else ""
    return [
        Row(name, "epoch PUT, epochs/s", n_epochs / api["epoch_s"], "1/s", n_epochs / base["epoch_s"]),
        Row(
            name,
            f"epoch PUT, points/s ({POINTS_PER_EPOCH}/epoch)",
            n_epochs * POINTS_PER_EPOCH / api["epoch_s"],
            "1/s",
            n_epochs * POINTS_PER_EPOCH / base["epoch_s"],
        ),
        Row(name, "epoch PUT p50", api["epoch_p50"], "ms", None, "< 10"),
        Row(name, "epoch PUT p99", api["epoch_p99"], "ms"),
        Row(name, "epoch PUT, server CPU per epoch", 1000 * api["epoch_cpu"] / n_epochs, "ms"),
        Row(
            name,
            "metrics POST x1000, points/s",
            n_points / api["metric_s"],
            "1/s",
            n_points / base["metric_s"],
            scalar_target,
        ),
        Row(name, "metrics POST x1000, points/server-CPU-s", n_points / max(api["metric_cpu"], 1e-9), "1/s"),
        Row(
            name,
            f"series {work.runs}x{work.steps} -> 1000 pts, cold p50",
            api["series_p50"],
            "ms",
            base["series_p50"],
            "< 100",
        ),
        Row(name, "series p99", api["series_p99"], "ms"),
        Row(name, "series, same query again (cached), p50", api["warm_p50"], "ms"),
        Row(name, f"series mean_sv {work.runs}x{work.epochs} epochs, p50", api["stat_p50"], "ms"),
        Row(name, "series, server CPU per query", 1000 * api["series_cpu"], "ms", None, "< 100"),
    ]


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


def print_table(rows: list[Row]) -> None:
    head = f"{'backend':<9} {'measure':<46} {'value':>12} {'unit':<4} {'baseline':>12} {'ratio':>7}  target"
    print(head)
    print("-" * len(head))
    for r in rows:
        base = f"{r.baseline:12,.1f}" if r.baseline is not None else " " * 12
        print(
            f"{r.backend:<9} {r.measure:<46} {r.value:12,.1f} {r.unit:<4} {base} {r.ratio():>7}  {r.target}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small workload (smoke test)")
    parser.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--pg-admin-url", default=PG_ADMIN_URL)
    args = parser.parse_args(argv)
    work = QUICK if args.quick else FULL
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="cw-bench-") as tmp:
        workdir = Path(tmp)
        if args.backend in ("sqlite", "both"):
            path = workdir / "bench.db"

            def sqlite_connect() -> sqlite3.Connection:
                conn = sqlite3.connect(workdir / "baseline.db")
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")
                return conn

            rows += bench_backend("sqlite", f"sqlite:///{path}", sqlite_connect, "?", work, workdir)
        if args.backend in ("postgres", "both"):
            rows += bench_postgres(args.pg_admin_url, work, workdir)
    print_table(rows)
    return 0


def bench_postgres(admin_url: str, work: Workload, workdir: Path) -> list[Row]:
    import psycopg

    with scratch_database(admin_url, "cw_bench") as url:
        libpq_url = url.replace("postgresql+psycopg://", "postgresql://", 1)
        return bench_backend("postgres", url, lambda: psycopg.connect(libpq_url), "%s", work, workdir)


if __name__ == "__main__":
    sys.exit(main())
