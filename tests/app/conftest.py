"""Fixtures for the server tests: a real database (SQLite file or PostgreSQL), the app, tokens.

Helpers (``Api``, ``Recorder``, ``STATS``) live in ``apikit.py``: import them from there.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from apikit import STATS as STATS  # re-exported for tests that still import it from conftest
from apikit import Api, Recorder
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text

from app.auth.api_tokens import create_token, ensure_admin
from app.db import Database
from app.main import create_app
from app.migrate import upgrade
from app.models import import_all_models
from app.settings import Settings


@pytest.fixture(scope="session")
def pg_migrated_url(pg_database_url: str) -> str:
    """The session's PostgreSQL database, migrated once."""
    engine = create_engine(pg_database_url)
    try:
        upgrade(engine)
    finally:
        engine.dispose()
    return pg_database_url


def _truncate(url: str) -> None:
    engine = create_engine(url)
    names = ", ".join(f'"{t.name}"' for t in import_all_models().sorted_tables)
    try:
        with engine.begin() as conn:
            conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
    finally:
        engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each storage test runs on a fresh SQLite file and on the (emptied) PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'collapsewatch.db'}"
    url: str = request.getfixturevalue("pg_migrated_url")
    _truncate(url)
    return url


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return Settings(
        database_url=database_url,
        broker_url=f"sqla+sqlite:///{tmp_path / 'broker.db'}",
        artifact_dir=tmp_path / "artifacts",
        secret_key="test-secret",
        lease_seconds=60,
        max_attempts=3,
        maintenance_interval_seconds=0,  # no reaper thread: lifecycle tests drive leases themselves
        _env_file=None,  # type: ignore[call-arg]
    )


@pytest.fixture
def database(settings: Settings) -> Iterator[Database]:
    db = Database(settings)
    upgrade(db.engine)
    yield db
    db.dispose()


@pytest.fixture
def api(settings: Settings) -> Iterator[Api]:
    app = create_app(settings)
    recorder = Recorder()
    app.state.enqueue = recorder
    app.state.publisher = recorder
    with TestClient(app) as client:
        with app.state.db.transaction() as session:
            admin = ensure_admin(session=session, email=settings.admin_email)
            user_token = create_token(session=session, user=admin, name="user").token
            worker_token = create_token(session=session, user=admin, name="worker", kind="worker").token
        yield Api(client, app.state.db, user_token, worker_token, recorder)
