"""Helpers for the server tests (imported as ``apikit``; a unique name, unlike ``conftest``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import update

from app.db import Database
from app.models import Run, utcnow

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


def spy_on(monkeypatch: Any, module: Any, name: str) -> list[Any]:
    """Replace ``module.name`` (an event-loop write) by a wrapper that records what each call
    returned (None: it wrote nothing, the usual path answered)."""
    calls: list[Any] = []
    real = getattr(module, name)

    def spy(**kwargs: Any) -> Any:
        found = real(**kwargs)
        calls.append(found)
        return found

    monkeypatch.setattr(module, name, spy)
    return calls


def under_write_lock(api: Api, send: Any, hold_s: float = 0.5) -> tuple[Any, float]:
    """``send()`` while another SQLite connection holds the write lock for ``hold_s`` seconds; its
    answer and the seconds it took."""
    import sqlite3
    import threading
    import time

    holder = sqlite3.connect(str(api.db.engine.url.database), isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")
    release = threading.Timer(hold_s, lambda: holder.execute("ROLLBACK"))
    release.start()
    try:
        started = time.monotonic()
        response = send()
        return response, time.monotonic() - started
    finally:
        release.join()
        holder.close()
