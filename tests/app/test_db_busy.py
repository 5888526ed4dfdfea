"""A statement the database gave up while it waited is a 503 with Retry-After, not a 500: SQLite's busy
timeout (another connection kept the write lock), PostgreSQL's cancel (``pg_cancel_backend``, a lock or
statement timeout). Nothing is written, and the same request succeeds once the lock is free."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from apikit import STATS
from fastapi.testclient import TestClient
from sqlalchemy import select

from app.auth.api_tokens import create_token, ensure_admin
from app.db import Database
from app.main import create_app
from app.models import Epoch, Metric
from app.runs import lifecycle, submit
from app.settings import Settings
from collapsewatch.contract import JobSubmit


class Ingest:
    def __init__(self, client: TestClient, db: Database, token: str, run_id: int) -> None:
        self.client, self.db, self.run_id = client, db, run_id
        self.headers = {"Authorization": f"Bearer {token}"}

    def epoch(self, epoch: int) -> Any:
        body = {"attempt": 1, "metrics": {"val_acc": 0.5}, "stats": STATS}
        return self.client.put(f"/api/v1/runs/{self.run_id}/epochs/{epoch}", json=body, headers=self.headers)

    def metrics(self, step: int) -> Any:
        body = {"attempt": 1, "points": [{"key": "loss", "step": step, "value": 0.5}]}
        return self.client.post(f"/api/v1/runs/{self.run_id}/metrics", json=body, headers=self.headers)

    def stored(self) -> tuple[list[int], list[int]]:
        with self.db.session(write=False) as session:
            epochs = session.scalars(
                select(Epoch.epoch).where(Epoch.run_id == self.run_id).order_by(Epoch.epoch)
            )
            steps = session.scalars(
                select(Metric.step).where(Metric.run_id == self.run_id).order_by(Metric.step)
            )
            return list(epochs), list(steps)


@pytest.fixture
def ingest(settings: Settings) -> Iterator[Ingest]:
    settings = settings.model_copy(update={"sqlite_busy_timeout_ms": 300})
    application = create_app(settings)
    db: Database = application.state.db
    with TestClient(application) as client:
        with db.transaction() as session:
            admin = ensure_admin(session=session, email="a@b.c")
            token = create_token(session=session, user=admin, name="w", kind="worker").token
            [run], _ = submit.create_jobs(session=session, data=JobSubmit(), owner_id=None, max_attempts=3)
            assert lifecycle.claim(session=session, run_id=run.id, worker={}, lease_seconds=60).run
        found = Ingest(client, db, token, run.id)
        for epoch in (0, 1, 2):  # the token and access caches warm up: epochs take the event loop's path
            assert found.epoch(epoch).status_code == 200
        yield found


def _busy(response: Any) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["Retry-After"].isdigit()
    assert "database is busy" in response.json()["message"]


def _logged(caplog: pytest.LogCaptureFixture) -> None:
    """Each 503 left a warning naming the request and the database's own words (a lock that never
    clears must show in the logs: before, the 500's traceback did)."""
    answered = [r.getMessage() for r in caplog.records if "answered 503" in r.getMessage()]
    assert len(answered) == 2, answered
    assert any("/epochs/3 answered 503" in m for m in answered)
    assert all(("locked" in m) or ("canceling statement" in m) for m in answered), answered


def test_sqlite_write_lock_held_past_the_busy_timeout_is_a_503(
    ingest: Ingest, caplog: pytest.LogCaptureFixture
) -> None:
    if ingest.db.engine.dialect.name != "sqlite":
        pytest.skip("SQLite's busy timeout")
    holder = sqlite3.connect(str(ingest.db.engine.url.database), isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")
        with caplog.at_level("WARNING", logger="app.api.errors"):
            _busy(ingest.epoch(3))
            _busy(ingest.metrics(0))
        holder.execute("ROLLBACK")
    finally:
        holder.close()
    _logged(caplog)
    assert ingest.stored() == ([0, 1, 2], [])
    assert ingest.epoch(3).status_code == 200 and ingest.metrics(0).status_code == 200
    assert ingest.stored() == ([0, 1, 2, 3], [0])


def test_postgres_statement_cancelled_while_it_waits_for_the_run_is_a_503(
    ingest: Ingest, caplog: pytest.LogCaptureFixture
) -> None:
    if ingest.db.engine.dialect.name != "postgresql":
        pytest.skip("PostgreSQL's cancel")
    url = str(ingest.db.engine.url.render_as_string(hide_password=False)).replace("+psycopg", "")
    answers: list[Any] = []
    caplog.set_level("WARNING", logger="app.api.errors")
    with psycopg.connect(url) as holder, psycopg.connect(url, autocommit=True) as admin:
        holder.execute("SELECT id FROM runs WHERE id = %s FOR UPDATE", (ingest.run_id,))  # the run's row lock
        for request in (lambda: ingest.epoch(3), lambda: ingest.metrics(0)):
            waiting = threading.Thread(target=lambda r=request: answers.append(r()))  # type: ignore[misc]
            waiting.start()
            deadline = time.monotonic() + 10
            pids: list[Any] = []
            while not pids and time.monotonic() < deadline:
                time.sleep(0.05)
                pids = admin.execute(
                    "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
                    " AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()"
                ).fetchall()
            assert len(pids) == 1, "the write never waited for the run's lock"
            admin.execute("SELECT pg_cancel_backend(%s)", (pids[0][0],))
            waiting.join(10)
        holder.rollback()
    assert len(answers) == 2  # a 500 would have raised in its thread (the test client re-raises)
    for answer in answers:
        _busy(answer)
    _logged(caplog)
    assert ingest.stored() == ([0, 1, 2], [])
    assert ingest.epoch(3).status_code == 200 and ingest.metrics(0).status_code == 200
    assert ingest.stored() == ([0, 1, 2, 3], [0])
