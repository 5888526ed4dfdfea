"""Migration 0005 on SQLite and PostgreSQL: the datasets table, and jobs still naming a free
``data_path`` that have not ended are failed (they would read a file of the worker's machine)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from app.db import Database
from app.migrate import downgrade, upgrade
from collapsewatch.contract import JobSpec

BEFORE = "0004_metric_chunks"


def _runs() -> sa.TableClause:
    names = ("id", "project_id", "kind", "status", "attempt", "max_attempts", "cancel_requested", "error")
    json = [sa.column(n, sa.JSON()) for n in ("config", "tags", "summary")]
    times = [sa.column(n, sa.DateTime()) for n in ("created_at", "updated_at")]
    return sa.table("runs", *(sa.column(n) for n in names), *json, *times)


def _insert(database: Database, rows: list[dict[str, Any]]) -> None:
    now = datetime.now(UTC).replace(tzinfo=None)
    base = {"project_id": 1, "kind": "job", "attempt": 0, "max_attempts": 3, "cancel_requested": False,
            "tags": [], "summary": {}, "created_at": now, "updated_at": now}  # fmt: skip
    with database.engine.begin() as conn:
        conn.execute(
            sa.text("INSERT INTO projects (id, name, created_at) VALUES (1, 'p', :now)"), {"now": now}
        )
        conn.execute(_runs().insert(), [base | row for row in rows])


def test_upgrade_fails_open_jobs_that_name_a_data_path_and_keeps_the_rest(database: Database) -> None:
    downgrade(database.engine, BEFORE)
    assert "datasets" not in sa.inspect(database.engine).get_table_names()
    legacy = JobSpec().model_dump(mode="json") | {"dataset": "npz", "data_path": "/etc/passwd"}
    _insert(
        database,
        [
            {"id": 1, "status": "queued", "config": legacy},
            {"id": 2, "status": "running", "config": legacy, "attempt": 1},
            {"id": 3, "status": "succeeded", "config": legacy, "attempt": 1},
            {"id": 4, "status": "queued", "config": JobSpec().model_dump(mode="json") | {"data_path": None}},
        ],
    )
    upgrade(database.engine)
    assert "datasets" in sa.inspect(database.engine).get_table_names()
    with database.engine.connect() as conn:
        rows = {
            r.id: r for r in conn.execute(sa.text("SELECT id, status, error, config FROM runs ORDER BY id"))
        }
    assert [rows[i].status for i in (1, 2, 3, 4)] == ["failed", "failed", "succeeded", "queued"]
    assert "dataset_id" in rows[1].error and rows[3].error is None and rows[4].error is None
    stored = rows[4].config if isinstance(rows[4].config, dict) else json.loads(rows[4].config)
    assert JobSpec.model_validate(stored).dataset == "digits"  # old configs (data_path: null) still load
