"""Ingestion A/B: two servers of two checkouts, on databases of their own, their requests interleaved.

    python -m bench.ingest_ab --baseline /path/to/worktree-of-old-commit [--backend postgres|sqlite]
                              [--epochs 2000] [--batch 50]

This machine's speed drifts by up to 2x within an hour, so two ``bench.ingest`` runs taken minutes
apart do not compare. Here both servers are up at once (``--baseline`` and this checkout, or
``--candidate``) and get the same epoch PUTs (d = 128, fresh connection each, as ``bench.ingest``) and
1,000-point metric POSTs in alternating batches, A then B, then B then A. Prints per request: wall
time, web-process CPU and (PostgreSQL) backend CPU, and the ratios B / A.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import ingest
from bench.pgscratch import scratch_database

TOTALS = ("ew", "ec", "ep", "mw", "mc")  # epochs wall / web CPU / db CPU, metrics wall / web CPU
EPOCH_KEYS, METRIC_KEYS = ("ew", "ec", "ep"), ("mw", "mc")


@dataclass
class Side:
    name: str
    pid: int
    backends: Any
    worker: ingest.Fresh
    user: ingest.Fresh
    epochs: list[tuple[str, str, bytes]]
    metrics: list[tuple[str, str, bytes]]
    totals: dict[str, float] = field(
        default_factory=lambda: dict.fromkeys(("ew", "ec", "ep", "mw", "mc"), 0.0)
    )


def start(stack: ExitStack, name: str, root: Path, backend: str, workdir: Path, epochs: int) -> Side:
    if backend == "postgres":
        url = stack.enter_context(scratch_database(ingest.PG_ADMIN_URL, f"cw_ab_{name.lower()}"))
    else:
        url = f"sqlite:///{workdir / f'{name}.db'}"
    (workdir / name).mkdir()
    ingest.REPO = root  # the checkout the server imports (bench.ingest.server reads it)
    base, pid = stack.enter_context(ingest.server(url, workdir / name))
    user, worker = ingest.tokens(url)
    runs = ingest.new_runs(base, user, 20, name)
    bodies = ingest.epoch_bodies(ingest.Workload(runs=20, epochs=epochs // 20, steps=0, series_repeats=0), 0)
    puts = [
        ("PUT", f"/api/v1/runs/{runs[b['_run']]}/epochs/{b['_epoch']}",
         json.dumps({k: v for k, v in b.items() if not k.startswith("_")}).encode())
        for b in bodies
    ]  # fmt: skip
    posts = [
        ("POST", f"/api/v1/runs/{run}/metrics", json.dumps({"attempt": 1, "points": batch}).encode())
        for run, batch in ingest.metric_batches(runs, 2000)
    ]
    side = Side(
        name, pid, ingest.pg_backends(url), ingest.Fresh(base, worker), ingest.Fresh(base, user), puts, posts
    )
    for method, path, body in puts[:20]:  # warm: token and access caches, connections
        side.worker.send(method, path, body)
    side.epochs = puts[20:]
    return side


def timed(
    side: Side, client: ingest.Fresh, requests: list[tuple[str, str, bytes]], keys: tuple[str, ...]
) -> None:
    backends = side.backends()
    pg0, cpu0, t0 = ingest.cpu_seconds(backends), ingest.cpu_seconds([side.pid]), time.perf_counter()
    for method, path, body in requests:
        client.send(method, path, body)
    side.totals[keys[0]] += time.perf_counter() - t0
    side.totals[keys[1]] += ingest.cpu_seconds([side.pid]) - cpu0
    if len(keys) > 2:
        side.totals[keys[2]] += ingest.cpu_seconds(backends) - pg0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--baseline", type=Path, required=True, help="checkout A (e.g. a worktree of the old commit)"
    )
    parser.add_argument(
        "--candidate", type=Path, default=Path(__file__).resolve().parents[1], help="checkout B"
    )
    parser.add_argument("--backend", choices=["postgres", "sqlite"], default="postgres")
    parser.add_argument("--epochs", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=50)
    args = parser.parse_args(argv)
    with ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="cw-ab-")))
        a = start(stack, "A", args.baseline, args.backend, workdir, args.epochs)
        b = start(stack, "B", args.candidate, args.backend, workdir, args.epochs)
        n = len(a.epochs)
        for i, start_at in enumerate(range(0, n, args.batch)):
            for side in (a, b) if i % 2 == 0 else (b, a):
                timed(side, side.worker, side.epochs[start_at : start_at + args.batch], EPOCH_KEYS)
        m = len(a.metrics)
        for i, start_at in enumerate(range(0, m, 4)):
            for side in (a, b) if i % 2 == 0 else (b, a):
                timed(side, side.user, side.metrics[start_at : start_at + 4], METRIC_KEYS)
    for side, root in ((a, args.baseline), (b, args.candidate)):
        t = side.totals
        print(
            f"{side.name} {root}: epoch PUT {1000 * t['ew'] / n:.2f} ms ({n / t['ew']:.0f}/s),"
            f" web CPU {1000 * t['ec'] / n:.2f} ms, db CPU {1000 * t['ep'] / n:.2f} ms;"
            f" metrics {1000 * m / t['mw']:,.0f} points/s, web CPU {1000 * t['mc'] / m:.2f} ms per 1,000"
        )
    ta, tb = a.totals, b.totals
    print(
        f"B / A: epoch wall {tb['ew'] / ta['ew']:.3f}, web CPU {tb['ec'] / ta['ec']:.3f};"
        f" metrics wall {tb['mw'] / ta['mw']:.3f}, web CPU {tb['mc'] / ta['mc']:.3f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
