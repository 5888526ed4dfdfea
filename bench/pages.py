"""Server-side render latency of the dashboard's heaviest pages on a large database.

    python -m bench.pages [--quick] [--runs N] [--epochs E] [--requests R] [--database-url URL]

Fills a fresh SQLite file (or the given database) with N runs (default 1,000) x E epochs (default 200,
so 200,000 epoch rows) through the ORM tables with bulk inserts: every epoch carries the §3
statistics (32 singular values, 32 per-dimension stds, a 64-bin histogram) and 4 metrics; every run a
summary, a config from a regularizer x batch size x lr x seed grid, a tag and one of 50 sweeps.
Then times R in-process requests (FastAPI TestClient: template rendering and queries, no network)
of each page after one warm-up, and prints p50/p99 with the ratio to the 300 ms target:

- runs list (default sort; sorted by a collapse-summary column; filtered by method)
- compare page for 20 runs grouped by regularizer with a sweep plot (all 200 epochs per run)
- one run page (200 epochs with histograms and spectra embedded)

``--quick``: 100 runs x 50 epochs, 10 requests.
"""

from __future__ import annotations

import argparse
import itertools
import math
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

TARGET_MS = 300.0
CHUNK = 5_000


def _stats(rng: random.Random, d: int = 32, b: int = 512) -> dict[str, Any]:
    lower, upper = math.sqrt(b) / d, math.sqrt(b / d)
    rho = rng.random()
    sv = sorted((rng.random() * 3 for _ in range(d)), reverse=True)
    counts = [0] * 64
    for _ in range(d):
        counts[rng.randrange(64)] += 1
    return {
        "mean_sv": lower + rho * (upper - lower),
        "sv_lower": lower,
        "sv_upper": upper,
        "sv_position": rho,
        "effective_rank": 1 + rho * (d - 1),
        "dead_dims": rng.randrange(4),
        "cov_offdiag": rng.random() / 10,
        "l2_std": rng.random() / 5,
        "singular_values": sv,
        "dim_std": [rng.random() for _ in range(d)],
        "std_hist": {"edges": [i * 2 / 64 for i in range(65)], "counts": counts},
    }


def fill(database_url: str, *, runs: int, epochs: int, seed: int = 0) -> list[int]:
    """Bulk-insert the workload; returns the run ids."""
    from sqlalchemy import insert

    from app.auth.api_tokens import ensure_admin
    from app.db import Database
    from app.migrate import upgrade
    from app.models import Epoch, Project, Run
    from app.settings import Settings
    from collapsewatch.contract import JobSpec

    rng = random.Random(seed)
    db = Database(Settings(database_url=database_url, _env_file=None))
    upgrade(db.engine)
    grid = list(
        itertools.product(["none", "svmax", "vicreg_variance"], [16, 64, 256], [0.001, 0.01, 0.1], [0, 1])
    )
    now = datetime.now(UTC)
    with db.transaction() as session:
        admin = ensure_admin(session=session, email="admin@localhost")
        project = Project(name="bench", created_at=now)
        session.add(project)
        session.flush()
        run_rows = []
        for i in range(runs):
            reg, batch, lr, s = grid[i % len(grid)]
            config = JobSpec(regularizer=reg, batch_size=batch, lr=lr, seed=s, epochs=epochs).model_dump(
                mode="json"
            )
            final = _stats(rng)
            summary = {k: final[k] for k in ("mean_sv", "sv_position", "effective_rank", "dead_dims")}
            summary |= {
                "stats_epoch": epochs - 1,
                "best_val_acc": rng.random(),
                "best_recall_at_1": rng.random(),
            }
            run_rows.append(
                {
                    "project_id": project.id,
                    "name": f"bench {reg} b={batch} lr={lr} s={s}",
                    "kind": "job",
                    "config": config,
                    "status": "succeeded",
                    "attempt": 1,
                    "max_attempts": 3,
                    "cancel_requested": False,
                    "sweep_id": f"sweep{i % 50:03d}",
                    "tags": [f"t{i % 7}"],
                    "owner_id": admin.id,
                    "summary": summary,
                    "last_epoch": epochs - 1,
                    "created_at": now - timedelta(seconds=runs - i),
                    "updated_at": now,
                }
            )
        session.execute(insert(Run), run_rows)
    with db.session(write=False) as session:
        from sqlalchemy import select

        ids = list(session.scalars(select(Run.id).order_by(Run.id)))
    batch_rows: list[dict[str, Any]] = []
    for run_id in ids:
        for epoch in range(epochs):
            st = _stats(rng)
            metrics = {
                "train_loss": 1 / (epoch + 1),
                "val_acc": rng.random(),
                "recall_at_1": rng.random(),
                "lr": 0.1,
            }
            batch_rows.append(
                {"run_id": run_id, "epoch": epoch, "attempt": 1, "metrics": metrics, "recorded_at": now} | st
            )
            if len(batch_rows) >= CHUNK:
                with db.transaction() as session:
                    session.execute(insert(Epoch), batch_rows)
                batch_rows = []
    if batch_rows:
        with db.transaction() as session:
            session.execute(insert(Epoch), batch_rows)
    db.dispose()
    return ids


def timed(call: Callable[[], Any], requests: int) -> list[float]:
    call()  # warm-up
    samples = []
    for _ in range(requests):
        started = time.perf_counter()
        call()
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--runs", type=int, default=None)
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--requests", type=int, default=None)
    parser.add_argument("--database-url", default=None, help="default: a fresh SQLite file")
    args = parser.parse_args()
    runs = args.runs or (100 if args.quick else 1000)
    epochs = args.epochs or (50 if args.quick else 200)
    requests = args.requests or (10 if args.quick else 50)
    with tempfile.TemporaryDirectory(prefix="cw-bench-pages-") as tmp:  # ~800 MB of SQLite at full size
        run_bench(Path(tmp), args.database_url, runs=runs, epochs=epochs, requests=requests)


def run_bench(workdir: Path, database_url: str | None, *, runs: int, epochs: int, requests: int) -> None:
    from fastapi.testclient import TestClient

    from app.main import create_app
    from app.settings import Settings

    url = database_url or f"sqlite:///{workdir / 'bench.db'}"
    started = time.perf_counter()
    ids = fill(url, runs=runs, epochs=epochs)
    fill_s = time.perf_counter() - started
    print(
        f"filled {len(ids)} runs x {epochs} epochs = {len(ids) * epochs:,} epoch rows "
        f"in {fill_s:.1f} s ({url})"
    )

    settings = Settings(
        database_url=url,
        artifact_dir=workdir / "artifacts",
        secret_key="bench",
        local_autologin=True,
        maintenance_interval_seconds=0,
        _env_file=None,
    )
    rng = random.Random(1)
    twenty = ",".join(str(i) for i in sorted(rng.sample(ids, 20)))
    pages = {
        "runs list (newest first)": "/runs",
        "runs list sorted by rho": "/runs?sort=-sv_position",
        "runs list regularizer=svmax, page 5": "/runs?regularizer=svmax&sort=mean_sv&page=5",
        "compare 20 runs, grouped + sweep": (
            f"/compare?runs={twenty}&stat=mean_sv&group=regularizer&x=lr&metric=mean_sv"
        ),
        "run page (all epochs)": f"/runs/{ids[len(ids) // 2]}",
    }
    with TestClient(create_app(settings)) as client:
        client.get("/runs")  # the local-mode session cookie
        print(f"\n{'page':40} {'p50 ms':>9} {'p99 ms':>9} {'p50/target':>11} {'bytes':>10}")
        for label, path in pages.items():
            response = client.get(path)
            assert response.status_code == 200, (path, response.status_code, response.text[:500])
            samples = timed(lambda p=path: client.get(p), requests)  # type: ignore[misc]
            p50, p99 = statistics.median(samples), percentile(samples, 0.99)
            print(f"{label:40} {p50:9.1f} {p99:9.1f} {p50 / TARGET_MS:11.2f} {len(response.content):10,}")
    print(
        f"\ntarget: p50 < {TARGET_MS:.0f} ms server-side (ratio < 1.00); "
        f"{requests} requests per page after a warm-up"
    )


if __name__ == "__main__":
    main()
