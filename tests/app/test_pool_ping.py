"""PostgreSQL connections are pinged only after sitting idle (``app.db.ping_after_idle``), not at
every checkout; a dead one is replaced, by the ping or, when it died in use, after one 503."""

from __future__ import annotations

import time

import psycopg
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

import app.db
from app.auth.api_tokens import create_token, ensure_admin
from app.db import Database
from app.main import create_app
from app.settings import Settings

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
