"""The runs tests' team: an admin, an owner, an editor, a viewer and an outsider on one app."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from teamkit import Team, build_team

from app.main import create_app
from app.settings import Settings


@pytest.fixture
def team(settings: Settings) -> Iterator[Team]:
    app = create_app(settings)
    app.state.enqueue = lambda run_id: None
    with TestClient(app) as client:
        yield build_team(client, app.state.db, settings.admin_email)
