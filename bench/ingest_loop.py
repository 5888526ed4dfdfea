"""The baselines of ``bench.ingest``: plain driver insert loops into the server's own database.

Same rows as the API writes, into tables shaped like ours (``bl_metrics``, ``bl_epochs``, created
fresh for each repeat), with the rows built before the clock starts, as the API bench builds its
request bodies: sqlite3 / psycopg ``executemany`` of 1,000 points then a commit, one INSERT and a
commit per epoch. No validation, no HTTP, no fencing: what the database itself does.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from typing import Any

from app.series.downsample import downsample

MetricBatch = tuple[int, list[dict[str, Any]]]


def _tables(conn: Any, sqlite: bool) -> None:
    serial = "INTEGER PRIMARY KEY" if sqlite else "SERIAL PRIMARY KEY"
    cur = conn.cursor()
    cur.execute("DROP TABLE IF EXISTS bl_epochs")
    cur.execute("DROP TABLE IF EXISTS bl_metrics")
    cur.execute(
        f"CREATE TABLE bl_epochs (id {serial}, run_id INT, epoch INT, attempt INT, mean_sv FLOAT,"
        " sv_lower FLOAT, sv_upper FLOAT, sv_position FLOAT, effective_rank FLOAT, dead_dims INT,"
        " cov_offdiag FLOAT, l2_std FLOAT, metrics TEXT, std_hist TEXT, singular_values TEXT,"
        " dim_std TEXT, UNIQUE(run_id, epoch))"
    )
    cur.execute(
        f"CREATE TABLE bl_metrics (id {serial}, run_id INT, key VARCHAR(128), step BIGINT,"
        " value FLOAT, attempt INT, UNIQUE(run_id, key, step))"
    )
    conn.commit()


def metric_loop(connect: Callable[[], Any], sqlite: bool, batches: Sequence[MetricBatch]) -> float:
    """Seconds to insert ``batches`` with one ``executemany`` and one commit per batch."""
    conn = connect()
    try:
        _tables(conn, sqlite)
        p = "?" if sqlite else "%s"
        sql = f"INSERT INTO bl_metrics (run_id, key, step, value, attempt) VALUES ({p}, {p}, {p}, {p}, {p})"
        rows = [[(run, b["key"], b["step"], b["value"], 1) for b in batch] for run, batch in batches]
        cur = conn.cursor()
        start = time.perf_counter()
        for batch_rows in rows:
            cur.executemany(sql, batch_rows)
            conn.commit()
        return time.perf_counter() - start
    finally:
        conn.close()


STAT_SCALARS: tuple[str, ...] = ("mean_sv", "sv_lower", "sv_upper", "sv_position", "effective_rank")
STAT_SCALARS += ("dead_dims", "cov_offdiag", "l2_std")


def epoch_loop(connect: Callable[[], Any], sqlite: bool, bodies: Sequence[dict[str, Any]]) -> float:
    """Seconds to insert one row per epoch body (arrays as JSON text), one commit each."""
    conn = connect()
    try:
        _tables(conn, sqlite)
        p = "?" if sqlite else "%s"
        columns = (
            "run_id",
            "epoch",
            "attempt",
            *STAT_SCALARS,
            "metrics",
            "std_hist",
            "singular_values",
            "dim_std",
        )
        sql = f"INSERT INTO bl_epochs ({', '.join(columns)}) VALUES ({', '.join([p] * len(columns))})"
        rows = []
        for body in bodies:
            s = body["stats"]
            rows.append((body["_run"], body["_epoch"], 1, *(s[k] for k in STAT_SCALARS),
                         json.dumps(body["metrics"]), json.dumps(s["std_hist"]),
                         json.dumps(s["singular_values"]), json.dumps(s["dim_std"])))  # fmt: skip
        cur = conn.cursor()
        start = time.perf_counter()
        for row in rows:
            cur.execute(sql, row)
            conn.commit()
        return time.perf_counter() - start
    finally:
        conn.close()


def series_loop(connect: Callable[[], Any], sqlite: bool, steps: int, repeats: int) -> list[float]:
    """Seconds per fetch of every ``bl_metrics`` point of key ``loss``, downsampled in Python."""
    conn = connect()
    p = "?" if sqlite else "%s"
    samples = []
    try:
        cur = conn.cursor()
        for _ in range(repeats):
            t0 = time.perf_counter()
            cur.execute(
                f"SELECT run_id, step, value FROM bl_metrics WHERE key = {p} ORDER BY run_id, step", ("loss",)
            )
            per_run: dict[int, tuple[list[int], list[float]]] = {}
            for run, step, value in cur.fetchall():
                xs, ys = per_run.setdefault(run, ([], []))
                xs.append(step)
                ys.append(value)
            for xs, ys in per_run.values():
                downsample(xs, ys, 1000, lo=0, hi=steps - 1)
            samples.append(time.perf_counter() - t0)
    finally:
        conn.close()
    return samples
