"""Fixtures for the dashboard tests: a migrated SQLite database, the app, and a seeding helper
that writes runs and epochs through the real services (the same code the API runs).

``Pages`` lives in ``pagekit.py`` (a unique module name, unlike ``conftest``): import it from there.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from dashboard_fakes import Recorder, Seeder
from fastapi.testclient import TestClient
from pagekit import Pages

from app.auth.api_tokens import ensure_admin
from app.db import Database
from app.main import create_app
from app.migrate import upgrade
from app.settings import Settings

if TYPE_CHECKING:
    from playwright.sync_api import Browser

# Debian's chromium, never a downloaded build (`make browser` installs it)
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """One headless chromium per test module (the browser tests' own ``page`` fixtures open contexts)."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: run `make browser` (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page_settings(tmp_path: Path) -> Settings:
    return Settings(
        database_url=f"sqlite:///{tmp_path / 'pages.db'}",
        broker_url=f"sqla+sqlite:///{tmp_path / 'broker.db'}",
        artifact_dir=tmp_path / "artifacts",
        secret_key="page-secret",  # type: ignore[arg-type]
        local_autologin=True,
        maintenance_interval_seconds=0,
        _env_file=None,  # type: ignore[call-arg]
    )


@pytest.fixture
def pages(page_settings: Settings) -> Iterator[Pages]:
    app = create_app(page_settings)
    recorder = Recorder()
    app.state.enqueue = recorder
    with TestClient(app) as client:
        db: Database = app.state.db
        upgrade(db.engine)
        with db.transaction() as session:
            admin = ensure_admin(session=session, email=page_settings.admin_email)
            admin_id = admin.id
        yield Pages(client, Seeder(db, admin_id), recorder, db)
