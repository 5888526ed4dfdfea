"""Fixtures for the queue tests: real servers, workers and brokers (see ``harness``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.queue.harness import Stack

if TYPE_CHECKING:
    from app.db import Database


@pytest.fixture(scope="module")
def team_database_url() -> Iterator[str]:
    """A PostgreSQL database of its own (a server process writes to it while other tests empty the
    session's shared one), dropped afterwards."""
    from tests.conftest import pg_scratch

    yield from pg_scratch("cw_queue")


@pytest.fixture(scope="module")
def redis_stack(
    redis_url: str, team_database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    """Team mode: a server on PostgreSQL and one CPU worker on the machine's Redis (a unique queue
    prefix per stack, so parallel test sessions do not collide)."""
    stack = Stack(
        tmp_path_factory.mktemp("redis-stack"), broker_url=redis_url, database_url=team_database_url
    )
    try:
        stack.start_server()
        stack.start_worker()
        yield stack
    finally:
        stack.close()


@pytest.fixture
def sqlite_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A server on the embedded SQLite broker; the test starts (and kills) its own workers."""
    stack = Stack(tmp_path_factory.mktemp("sqlite-stack"))
    try:
        stack.start_server()
        yield stack
    finally:
        stack.close()


@pytest.fixture(scope="session")
def pg_queue_url(pg_database_url: str) -> str:
    """The session's PostgreSQL database, migrated once (emptied per test by ``queue_db``)."""
    from sqlalchemy import create_engine

    from app.migrate import upgrade

    engine = create_engine(pg_database_url)
    try:
        upgrade(engine)
    finally:
        engine.dispose()
    return pg_database_url


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def queue_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """A migrated, empty database on a SQLite file and on PostgreSQL."""
    from sqlalchemy import text

    from app.db import Database
    from app.migrate import upgrade
    from app.models import import_all_models
    from app.settings import Settings

    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'queue.db'}"
    else:
        url = request.getfixturevalue("pg_queue_url")
    database = Database(Settings(database_url=url, _env_file=None))  # type: ignore[call-arg]
    upgrade(database.engine)
    if request.param == "postgres":
        names = ", ".join(f'"{t.name}"' for t in import_all_models().sorted_tables)
        with database.engine.begin() as conn:
            conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
    try:
        yield database
    finally:
        database.dispose()
