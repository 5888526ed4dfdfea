"""The dashboard at lab scale: 10,000 runs x 200 epochs and 20M SDK scalars on PostgreSQL, read
through a real uvicorn process.

    python -m bench.scale [--quick] [--requests 40] [--keep | --reuse URL] [--seed 0]

Builds a fresh PostgreSQL database (``bench.scale_fill``: COPY and server-side INSERT … SELECT, seeded,
a few minutes) of 10,000 runs x 200 epochs with statistics as ``bench.pages`` fills them (32 singular
values, 32 stds, a 64-bin histogram) and 20M scalar points (2 keys x 950 steps on every run, and
``fine/loss`` with 100,000 steps on 10 runs), then starts ``uvicorn app.main:app`` on it and times,
after one warm-up each, ``--requests`` sequential requests per workload (p50 / p95, ms, measured by the
client on 127.0.0.1):

- runs page: newest first; filtered by status, by tag, by a config key (sorted by a summary column,
  page 5); sorted by rho; and, where the schema has ``runs.archived_at``, with 2,000 archived runs
- runs API: filtered by status, by tag, by a config key
- run page: 200 epochs with spectra and histograms (a different run each request)
- compare page: 100 runs grouped by regularizer with a sweep plot
- series API: 10 runs x 100,000 points downsampled to 1,000 (a different ``max_points`` each request,
  so the server's series cache never answers)

Goals: p95 < 100 ms for lists, run pages and series; < 200 ms for compare. Prints a table with PASS /
MISS and the web process's peak RSS (``VmHWM``; goal < 300 MB). ``--keep`` leaves the database in
place and prints its URL; ``--reuse URL`` skips the fill. ``--quick``: a small database (tests).
"""

from __future__ import annotations

import argparse
import math
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.scale_fill import QUICK, Size, fill, libpq_url

PG_ADMIN_URL = os.environ.get("TEST_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/test")
LIST_GOAL_MS, COMPARE_GOAL_MS, RSS_GOAL_MB = 100.0, 200.0, 300.0


@dataclass(frozen=True)
class Workload:
    label: str
    paths: list[str]  # cycled through, one per request
    goal_ms: float
    api: bool = False


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def rss_mb(pid: int, field: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return math.nan


def workloads(info: dict[str, Any], size: Size, requests: int) -> list[Workload]:
    rng = random.Random(1)
    ids: list[int] = info["ids"]
    hundred = ",".join(map(str, sorted(rng.sample(ids, min(100, len(ids))))))
    run_pages = [f"/runs/{r}" for r in rng.sample(ids, min(requests + 1, len(ids)))]
    series = "&".join(f"run={r}" for r in info["series_ids"])
    n = LIST_GOAL_MS
    found = [
        Workload("runs page, newest first", ["/runs"], n),
        Workload("runs page, status=failed", ["/runs?status=failed"], n),
        Workload("runs page, tag=keep", ["/runs?tag=keep"], n),
        Workload(
            "runs page, regularizer=svmax by mean_sv p5", ["/runs?regularizer=svmax&sort=mean_sv&page=5"], n
        ),
        Workload("runs page, sorted by rho", ["/runs?sort=-sv_position"], n),
        Workload("runs API, status=failed", ["/api/v1/runs?status=failed"], n, api=True),
        Workload("runs API, tag=keep", ["/api/v1/runs?tag=keep"], n, api=True),
        Workload(
            "runs API, config regularizer=svmax", ["/api/v1/runs?config=regularizer:svmax"], n, api=True
        ),
        Workload(f"run page ({size.epochs} epochs)", run_pages, n),
        Workload(
            "compare 100 runs, grouped + sweep",
            [f"/compare?runs={hundred}&stat=mean_sv&group=regularizer&x=lr&metric=mean_sv"],
            COMPARE_GOAL_MS,
        ),
        Workload(
            f"series {len(info['series_ids'])} runs x {size.series_steps:,} pts",
            [f"/api/v1/series?{series}&key=fine/loss&max_points={1000 + i}" for i in range(requests + 1)],
            n,
            api=True,
        ),
    ]
    if info.get("archived"):
        found.append(Workload(f"runs page, {len(info['archived']):,} archived hidden", ["/runs?page=3"], n))
    return found


def measure(stack: Any, loads: list[Workload], requests: int) -> list[dict[str, Any]]:
    import httpx

    pid = stack.server.pid
    browser = httpx.Client(base_url=stack.url, timeout=120)
    assert browser.get("/runs").status_code == 200  # the local-mode session cookie
    api = stack.http
    rows = []
    for load in loads:
        client = api if load.api else browser
        first = client.get(load.paths[0])  # warm-up, and a correctness check
        assert first.status_code == 200, (load.paths[0], first.status_code, first.text[:300])
        samples = []
        for i in range(requests):
            path = load.paths[(i + 1) % len(load.paths)]
            started = time.perf_counter()
            response = client.get(path)
            samples.append((time.perf_counter() - started) * 1000)
            assert response.status_code == 200, (path, response.status_code, response.text[:300])
        p50, p95 = statistics.median(samples), percentile(samples, 0.95)
        row = {"label": load.label, "p50": p50, "p95": p95, "goal": load.goal_ms, "bytes": len(first.content)}
        row["rss"] = rss_mb(pid, "VmRSS")
        rows.append(row)
        verdict = "PASS" if p95 < load.goal_ms else "MISS"
        print(
            f"{load.label:44} {p50:8.1f} {p95:8.1f} {load.goal_ms:6.0f} {verdict:>6} {row['bytes']:>10,} "
            f"{row['rss']:7.0f}",
            flush=True,
        )
    browser.close()
    return rows


@contextmanager
def database(args: argparse.Namespace) -> Iterator[str]:
    if args.reuse:
        yield args.reuse
        return
    from bench.pgscratch import scratch_database, sqlalchemy_url

    if args.keep:
        import psycopg

        name = f"cw_scale_{'quick' if args.quick else 'full'}_{args.seed}"
        with psycopg.connect(args.admin_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            admin.execute(f'CREATE DATABASE "{name}"')
        yield sqlalchemy_url(args.admin_url, name)
        return
    with scratch_database(args.admin_url, "cw_scale") as url:
        yield url


def describe(url: str) -> dict[str, Any]:
    """What a reused database holds (the same as ``fill`` returns)."""
    import psycopg

    with psycopg.connect(libpq_url(url)) as conn:
        ids = [int(r[0]) for r in conn.execute("SELECT id FROM runs ORDER BY id")]
        series = [
            int(r[0])
            for r in conn.execute("SELECT DISTINCT run_id FROM metric_chunks WHERE key = 'fine/loss'")
        ]
        has_archive = conn.execute(
            "SELECT 1 FROM information_schema.columns"
            " WHERE table_name = 'runs' AND column_name = 'archived_at'"
        ).fetchone()
        archived = (
            [int(r[0]) for r in conn.execute("SELECT id FROM runs WHERE archived_at IS NOT NULL")]
            if has_archive
            else []
        )
    return {"ids": ids, "series_ids": sorted(series), "archived": archived}


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    from bench.load import make_stack

    size = QUICK if args.quick else Size()
    requests = args.requests or (3 if args.quick else 40)
    with database(args) as url, tempfile.TemporaryDirectory(prefix="cw-scale-") as tmp:
        if args.reuse:
            info = describe(url)
            from app.db import Database
            from app.migrate import upgrade
            from app.settings import Settings

            db = Database(Settings(database_url=url, _env_file=None))
            upgrade(db.engine)  # new indexes of this checkout
            db.dispose()
        else:
            started = time.perf_counter()
            print(
                f"filling {size.runs:,} runs x {size.epochs} epochs + {size.points:,} scalar points ...",
                flush=True,
            )
            info = fill(url, size, seed=args.seed)
            print(f"filled in {time.perf_counter() - started:.0f} s: {url}", flush=True)
        stack = make_stack(Path(tmp), url, maintenance_interval_seconds=0)
        try:
            stack.start_server()
            head = f"{'p50 ms':>8} {'p95 ms':>8} {'goal':>6} {'':>6} {'bytes':>10} {'RSS MB':>7}"
            print(f"\n{'workload':44} {head}")
            rows = measure(stack, workloads(info, size, requests), requests)
            peak = rss_mb(stack.server.pid, "VmHWM")  # type: ignore[union-attr]
        finally:
            stack.close()
        missed = [r["label"] for r in rows if r["p95"] >= r["goal"]]
        print(
            f"\nweb process peak RSS (VmHWM): {peak:.0f} MB (goal < {RSS_GOAL_MB:.0f} MB: "
            f"{'PASS' if peak < RSS_GOAL_MB else 'MISS'}); {requests} requests per workload after a warm-up; "
            f"{len(missed)} of {len(rows)} workloads miss their p95 goal"
        )
        if args.keep and not args.reuse:
            print(f"database kept: --reuse {url}")
        return rows


def arguments() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.scale", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a small database (a smoke test)")
    parser.add_argument("--requests", type=int, default=None, help="timed requests per workload (default 40)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", action="store_true", help="keep the filled database (cw_scale_full_SEED)")
    parser.add_argument("--reuse", default=None, metavar="URL", help="time an already filled database")
    parser.add_argument("--admin-url", default=PG_ADMIN_URL)
    return parser


def main(argv: list[str] | None = None) -> int:
    run(arguments().parse_args(argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
