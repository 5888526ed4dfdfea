"""Issue 19: the runs API's config filter, and ``bench.scale --quick`` as a smoke test (no timings)."""

from __future__ import annotations

import numpy as np
import pytest
from apikit import Api


def test_runs_api_filters_by_config_key(api: Api) -> None:
    first = api.sdk_run(project="p", name="a", config={"regularizer": "svmax", "lr": 0.01})
    api.sdk_run(project="p", name="b", config={"regularizer": "none", "lr": 0.01})
    found = api.client.get("/api/v1/runs", params={"config": "regularizer:svmax"}, headers=api.user)
    assert found.status_code == 200
    assert [r["id"] for r in found.json()] == [first["id"]]
    assert found.headers["X-Total-Count"] == "1"
    both = api.client.get("/api/v1/runs", params=[("config", "lr:0.01")], headers=api.user)
    assert len(both.json()) == 2
    none = api.client.get(
        "/api/v1/runs", params=[("config", "lr:0.01"), ("config", "regularizer:vicreg")], headers=api.user
    )
    assert none.json() == []
    bad = api.client.get("/api/v1/runs", params={"config": "no-colon"}, headers=api.user)
    assert bad.status_code == 422
    assert "config" in bad.text


@pytest.mark.postgres
def test_scale_bench_quick_fills_and_serves_every_workload() -> None:
    import psycopg

    from bench import scale
    from bench.scale_fill import KEYS, QUICK, libpq_url
    from tests.conftest import PG_ADMIN_URL

    name = "cw_scale_quick_7"
    rows = scale.run(
        scale.arguments().parse_args(
            ["--quick", "--keep", "--seed", "7", "--requests", "2", "--admin-url", PG_ADMIN_URL]
        )
    )
    try:
        assert {r["label"] for r in rows} >= {"runs page, newest first", "compare 100 runs, grouped + sweep"}
        assert all(r["bytes"] > 0 and r["p95"] > 0 for r in rows)
        url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
        with psycopg.connect(libpq_url(url)) as conn:
            (runs,) = conn.execute("SELECT count(*) FROM runs").fetchone()  # type: ignore[misc]
            (epochs,) = conn.execute("SELECT count(*) FROM epochs").fetchone()  # type: ignore[misc]
            (points,) = conn.execute("SELECT count(*) FROM metrics").fetchone()  # type: ignore[misc]
            assert (runs, epochs, points) == (QUICK.runs, QUICK.runs * QUICK.epochs, QUICK.points)
            # the packed chunks hold exactly the rows (the app's invariant, app.series.chunks)
            run_id, key = conn.execute(
                "SELECT run_id, key FROM metric_chunks WHERE key = %s LIMIT 1", (KEYS[2],)
            ).fetchone()  # type: ignore[misc]
            stored = conn.execute(
                "SELECT step, value FROM metrics WHERE run_id = %s AND key = %s ORDER BY step", (run_id, key)
            ).fetchall()
            chunks = conn.execute(
                "SELECT steps, vals FROM metric_chunks WHERE run_id = %s AND key = %s ORDER BY chunk",
                (run_id, key),
            ).fetchall()
        steps = np.frombuffer(b"".join(bytes(c[0]) for c in chunks), dtype="<i8")
        values = np.frombuffer(b"".join(bytes(c[1]) for c in chunks), dtype="<f8")
        assert steps.tolist() == [s for s, _ in stored]
        assert values.tolist() == [v for _, v in stored]
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
