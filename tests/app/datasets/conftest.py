"""A team (tests/app/teamkit.py) on a fresh SQLite file and on PostgreSQL, with the real app."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import teamkit
from argon2 import PasswordHasher
from fastapi.testclient import TestClient
from teamkit import Team, build_team

from app.main import create_app
from app.settings import Settings

# The datasets tests sign nobody in with a password (bearer tokens): cheap hashes keep the set-up short.
_CHEAP = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)


@pytest.fixture
def team(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[Team]:
    monkeypatch.setattr(teamkit, "hash_password", _CHEAP.hash)
    app = create_app(settings)
    app.state.enqueue = lambda run_id: None  # runs stay queued; the tests claim them
    with TestClient(app) as client:
        yield build_team(client, app.state.db, settings.admin_email)
