"""A scratch PostgreSQL database for a test session or a benchmark: created fresh, dropped afterwards."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager


def sqlalchemy_url(admin_url: str, name: str) -> str:
    """``postgresql+psycopg://…/name`` on the server of ``admin_url`` (a libpq ``postgresql://`` URL)."""
    base = admin_url.rsplit("/", 1)[0]
    return base.replace("postgresql://", "postgresql+psycopg://", 1) + f"/{name}"


@contextmanager
def scratch_database(admin_url: str, prefix: str = "cw", *, name: str | None = None) -> Iterator[str]:
    """Create database ``name`` (default: ``prefix`` + a random suffix) on the server of ``admin_url``,
    yield its SQLAlchemy URL, and drop it (closing leftover connections) when the block ends."""
    import psycopg

    name = name or f"{prefix}_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin_url, autocommit=True, connect_timeout=10) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield sqlalchemy_url(admin_url, name)
    finally:
        with psycopg.connect(admin_url, autocommit=True, connect_timeout=10) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
