"""Fixtures for the dashboard tests: a migrated SQLite database, the app, and a seeding helper
that writes runs and epochs through the real services (the same code the API runs)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.db import Database
from app.main import create_app
from app.migrate import upgrade
from app.schemas import EpochIn, JobSubmit
from app.services import epochs, lifecycle, runs
from app.services.tokens import ensure_admin
from app.settings import Settings

from .fakes import fake_stats


@dataclass
class Recorder:
    enqueued: list[int] = field(default_factory=list)

    def __call__(self, run_id: int) -> None:
        self.enqueued.append(run_id)


@dataclass
class Seeder:
    db: Database
    admin_id: int

    def jobs(
        self,
        *,
        spec: dict[str, Any] | None = None,
        sweep: dict[str, list[Any]] | None = None,
        seeds: list[int] | None = None,
        tags: list[str] | None = None,
        project: str = "default",
    ) -> list[int]:
        data = JobSubmit(project=project, spec=spec or {}, sweep=sweep or {}, seeds=seeds, tags=tags or [])
        with self.db.transaction() as session:
            created, _ = runs.create_jobs(session=session, data=data, owner_id=self.admin_id, max_attempts=3)
            return [r.id for r in created]

    def claim(self, run_id: int) -> None:
        with self.db.transaction() as session:
            result = lifecycle.claim(
                session=session,
                run_id=run_id,
                worker={"host": "testhost", "device": "cpu"},
                lease_seconds=600,
            )
            assert result.run is not None, result.message

    def epoch(self, run_id: int, epoch: int, *, rho: float = 0.5, dead: int = 0, acc: float = 0.5) -> None:
        data = EpochIn(
            attempt=1,
            metrics={"train_loss": 1.0 / (epoch + 1), "val_acc": acc},
            stats=fake_stats(epoch, rho=rho, dead=dead),
        )  # type: ignore[arg-type]
        with self.db.transaction() as session:
            epochs.put_epoch(session=session, run_id=run_id, epoch=epoch, data=data)


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


@dataclass
class Pages:
    client: TestClient
    seed: Seeder
    recorder: Recorder
    db: Database

    def csrf(self, path: str = "/runs") -> str:
        html = self.client.get(path).text
        marker = 'name="csrf-token" content="'
        start = html.index(marker) + len(marker)
        return html[start : html.index('"', start)]


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
