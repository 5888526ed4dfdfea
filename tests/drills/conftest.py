"""Fixtures for the fault drills (see ``drillkit``); the queue tests' ``Stack`` runs the processes."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from drillkit import PrivatePostgres, postgres_bin


@pytest.fixture(scope="module")
def private_pg() -> Iterator[PrivatePostgres]:
    bindir = postgres_bin()
    if bindir is None:  # pragma: no cover - CI installs PostgreSQL
        pytest.fail("no PostgreSQL binaries under /usr/lib/postgresql/*/bin (apt-get install postgresql)")
    server = PrivatePostgres(bindir)
    try:
        server.init()
        yield server
    finally:
        server.destroy()
