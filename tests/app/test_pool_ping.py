"""PostgreSQL connections are pinged only after sitting idle (``app.db.ping_after_idle``), not at
every checkout; a dead one is replaced, by the ping or, when it died in use, after one 503 (also on
the one-statement epoch write, which runs on the event loop's own connections)."""

from __future__ import annotations

import time
from typing import Any

import psycopg
import pytest
from apikit import STATS
from fastapi.testclient import TestClient
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError

import app.db
from app.auth.api_tokens import create_token, ensure_admin
from app.db import Database
from app.main import create_app
from app.models import Epoch, RunEvent
from app.runs import lifecycle, submit
from app.series import epoch_pg
from app.settings import Settings
from collapsewatch.contract import JobSubmit

# PostgreSQL only (SQLite has no pool to ping): the app fixtures of conftest.py, on their postgres side.
pytestmark = [pytest.mark.postgres, pytest.mark.parametrize("database_url", ["postgres"], indirect=True)]


def _counting(database: Database, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    seen: list[int] = []
    dialect = database.engine.dialect
    original = dialect.do_ping

    def counted(dbapi_connection: object) -> bool:
        seen.append(1)
        return bool(original(dbapi_connection))

    monkeypatch.setattr(dialect, "do_ping", counted)
    return seen


def _backend_pid(database: Database) -> int:
    with database.session(write=False) as session:
        return int(session.execute(text("SELECT pg_backend_pid()")).scalar_one())


def _terminate(url: str, pid: int) -> None:
    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True) as conn:
        conn.execute("SELECT pg_terminate_backend(%s)", (pid,))
    time.sleep(0.2)  # the backend is gone once the client sees its socket closed


def test_a_connection_in_steady_use_is_not_pinged(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen = _counting(database, monkeypatch)
    pids = {_backend_pid(database) for _ in range(20)}
    assert seen == []
    assert len(pids) == 1  # LIFO: the same warm connection every time


def test_an_idle_connection_is_pinged_and_a_dead_one_replaced(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(app.db, "PING_AFTER_IDLE_S", 0.3)
    database = Database(settings)
    try:
        seen = _counting(database, monkeypatch)
        first = _backend_pid(database)
        time.sleep(0.4)
        assert _backend_pid(database) == first  # idle past the limit: pinged, alive, kept
        assert len(seen) == 1
        _terminate(settings.database_url, first)
        time.sleep(0.4)
        replaced = _backend_pid(database)  # no error: the ping found it dead and the pool reconnected
        assert replaced != first
        assert len(seen) == 2
    finally:
        database.dispose()


def test_a_connection_that_died_in_use_costs_one_503_then_the_pool_recovers(settings: Settings) -> None:
    application = create_app(settings)
    db: Database = application.state.db
    with db.transaction() as session:
        token = create_token(
            session=session, user=ensure_admin(session=session, email="a@b.c"), name="t"
        ).token
    headers = {"Authorization": f"Bearer {token}"}
    with TestClient(application) as client:
        assert client.get("/api/v1/runs", headers=headers).status_code == 200
        _terminate(settings.database_url, _backend_pid(db))  # the pooled connection, not idle long
        down = client.get("/api/v1/runs", headers=headers)
        assert down.status_code == 503, down.text
        assert "database is unavailable" in down.json()["message"]
        assert client.get("/api/v1/runs", headers=headers).status_code == 200


def _terminate_all(url: str) -> None:
    """Every other connection to the test database: the app's pool and its event loop's."""
    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True) as conn:
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
    time.sleep(0.2)


def test_an_epoch_write_on_a_lost_connection_costs_one_503_and_writes_nothing(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The one-statement epoch write runs on the event loop's own connections (``app.driver_pool``):
    a lost one must still be a 503 (not a 500), be dropped, and write nothing."""
    application = create_app(settings)
    db: Database = application.state.db
    with db.transaction() as session:
        admin = ensure_admin(session=session, email="a@b.c")
        token = create_token(session=session, user=admin, name="w", kind="worker").token
        [run], _ = submit.create_jobs(session=session, data=JobSubmit(), owner_id=None, max_attempts=3)
        assert lifecycle.claim(session=session, run_id=run.id, worker={}, lease_seconds=60).run
    calls: list[BaseException | None] = []
    real = epoch_pg.insert_new_epoch

    async def spied(**kwargs: Any) -> Any:
        try:
            found = await real(**kwargs)
        except BaseException as exc:
            calls.append(exc)
            raise
        calls.append(None)
        return found

    monkeypatch.setattr(epoch_pg, "insert_new_epoch", spied)
    headers = {"Authorization": f"Bearer {token}"}
    body = {"attempt": 1, "metrics": {"val_acc": 0.5}, "stats": STATS}
    with TestClient(application) as client:
        for epoch in (0, 1, 2):  # the token and access caches warm up; then one statement
            assert client.put(f"/api/v1/runs/{run.id}/epochs/{epoch}", json=body, headers=headers).is_success
        assert calls == [None]
        _terminate_all(settings.database_url)
        down = client.put(f"/api/v1/runs/{run.id}/epochs/3", json=body, headers=headers)
        assert down.status_code == 503, down.text
        assert "database is unavailable" in down.json()["message"]
        assert isinstance(calls[-1], DBAPIError) and calls[-1].connection_invalidated
        again = client.put(f"/api/v1/runs/{run.id}/epochs/3", json=body, headers=headers)
        assert again.status_code == 200, again.text
        assert calls[-1] is None  # on a new connection, still the one-statement path
    with db.session(write=False) as session:
        stored = session.scalars(select(Epoch.epoch).where(Epoch.run_id == run.id).order_by(Epoch.epoch))
        assert list(stored) == [0, 1, 2, 3]
        events = session.scalars(select(RunEvent).where(RunEvent.run_id == run.id, RunEvent.type == "epoch"))
        assert sorted(e.payload["epoch"] for e in events) == [0, 1, 2, 3]
