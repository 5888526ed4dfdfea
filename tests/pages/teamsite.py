"""A team-mode site for the page tests (imported as ``teamsite``): users with passwords in two
projects, a run in each, and browsers signed in through the real login form."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from dashboard_fakes import Recorder, Seeder
from fastapi.testclient import TestClient

from app.auth.api_tokens import ensure_admin
from app.auth.sessions import hash_password
from app.db import Database
from app.main import create_app
from app.models import ProjectMember, User, utcnow
from app.runs.submit import ensure_project
from app.settings import Settings

PASSWORD = "correct horse battery"


@dataclass
class TeamSite:
    app: object
    db: Database
    settings: Settings
    seed: Seeder
    team_run: int
    other_run: int

    def client(self, email: str | None = None) -> TestClient:
        """A new browser; signed in as ``email`` through the login form when given."""
        client = TestClient(self.app)  # type: ignore[arg-type]
        if email is not None:
            response = login(client, email, PASSWORD)
            assert response.status_code == 303, response.text
        return client


def login(client: TestClient, email: str, password: str) -> Any:
    html = client.get("/login").text
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert csrf
    form = {"email": email, "password": password, "csrf_token": csrf.group(1)}
    return client.post("/login", data=form, follow_redirects=False)


def page_csrf(client: TestClient, path: str = "/account") -> str:
    html = client.get(path).text
    match = re.search(r'name="csrf-token" content="([^"]+)"', html)
    assert match and match.group(1)
    return match.group(1)


def _settings(tmp_path: Path) -> Settings:
    return Settings(
        database_url=f"sqlite:///{tmp_path / 'team.db'}",
        broker_url=f"sqla+sqlite:///{tmp_path / 'broker.db'}",
        artifact_dir=tmp_path / "artifacts",
        secret_key="team-secret",  # type: ignore[arg-type]
        local_autologin=False,
        maintenance_interval_seconds=0,
        _env_file=None,  # type: ignore[call-arg]
    )


@lru_cache(maxsize=1)
def password_hash() -> str:
    return hash_password(PASSWORD)  # Argon2id is slow on purpose: hash once for every test user


@contextmanager
def team_site(tmp_path: Path) -> Iterator[TeamSite]:
    """Owner, editor and viewer of "team"; an outsider owning "other"; one job run in each."""
    settings = _settings(tmp_path)
    app = create_app(settings)
    app.state.enqueue = Recorder()
    with TestClient(app):
        db: Database = app.state.db
        with db.transaction() as session:
            admin = ensure_admin(session=session, email=settings.admin_email)
            users = {}
            for name in ("owner", "editor", "viewer", "outsider"):
                users[name] = User(email=f"{name}@example.org", password_hash=password_hash())
                session.add(users[name])
            session.flush()
            team = ensure_project(session=session, name="team", owner_id=users["owner"].id)
            ensure_project(session=session, name="other", owner_id=users["outsider"].id)
            for role in ("editor", "viewer"):
                session.add(
                    ProjectMember(project_id=team.id, user_id=users[role].id, role=role, created_at=utcnow())
                )
            admin_id = admin.id
        seed = Seeder(db, admin_id)
        team_run = seed.jobs(project="team")[0]
        other_run = seed.jobs(project="other")[0]
        yield TeamSite(app, db, settings, seed, team_run, other_run)
