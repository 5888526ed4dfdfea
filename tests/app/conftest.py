"""Fixtures for the server tests: a real database (SQLite file or PostgreSQL), the app, tokens."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text, update

from app.db import Database
from app.main import create_app
from app.migrate import upgrade
from app.models import Run, import_all_models, utcnow
from app.services.tokens import create_token, ensure_admin
from app.settings import Settings

STATS: dict[str, Any] = {
    "mean_sv": 0.5,
    "sv_lower": 0.125,
    "sv_upper": 1.0,
    "sv_position": 0.43,
    "singular_values": [1.5, 0.25],
    "effective_rank": 1.7,
    "dim_std": [0.1, 0.3],
    "std_hist": {"edges": [0.0, 1.0, 2.0], "counts": [2, 0]},
    "dead_dims": 0,
    "cov_offdiag": 0.01,
    "l2_std": 0.2,
}


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


@dataclass
class Recorder:
    """Stands in for the queue and the publisher: records what the API sends after commits."""

    enqueued: list[int] = field(default_factory=list)
    published: list[tuple[int, str, dict[str, Any]]] = field(default_factory=list)

    def __call__(self, run_id: int) -> None:
        self.enqueued.append(run_id)

    def publish(self, run_id: int, event_type: str, payload: dict[str, Any]) -> None:
        self.published.append((run_id, event_type, payload))

    async def aclose(self) -> None:
        return None


@dataclass
class Api:
    """A TestClient plus a user token and a worker token."""

    client: TestClient
    db: Database
    user_token: str
    worker_token: str
    recorder: Recorder

    @property
    def user(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.user_token}"}

    @property
    def worker(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.worker_token}"}

    def sdk_run(self, **body: Any) -> dict[str, Any]:
        response = self.client.post("/api/v1/runs", json={"project": "p", **body}, headers=self.user)
        assert response.status_code == 201, response.text
        return dict(response.json())

    def job(self, **body: Any) -> dict[str, Any]:
        response = self.client.post("/api/v1/jobs", json={"project": "p", **body}, headers=self.user)
        assert response.status_code == 201, response.text
        return dict(response.json()[0])

    def expire_lease(self, run_id: int) -> None:
        """Pretend the worker died: its lease ran out a second ago."""
        with self.db.transaction() as session:
            session.execute(
                update(Run).where(Run.id == run_id).values(lease_until=utcnow() - timedelta(seconds=1))
            )

    def claim(self, run_id: int) -> Any:
        return self.client.post(f"/api/v1/runs/{run_id}/claim", json={}, headers=self.worker)

    def put_epoch(self, run_id: int, epoch: int, attempt: int = 1, **body: Any) -> Any:
        payload = {"attempt": attempt, "metrics": {"val_acc": 0.5}, "stats": STATS} | body
        return self.client.put(f"/api/v1/runs/{run_id}/epochs/{epoch}", json=payload, headers=self.worker)


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
