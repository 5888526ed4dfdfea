"""Helpers for the dashboard tests: fake but consistent collapse statistics, and a seeder that
writes runs and epochs through the real services (the same code the API runs)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from app.db import Database
from app.runs import lifecycle, submit
from app.series import epochs
from collapsewatch.contract import EpochIn, JobSubmit

BINS = 8


def fake_stats(epoch: int, *, rho: float = 0.5, dead: int = 0, d: int = 8) -> dict[str, Any]:
    """A consistent collapse_stats dict (bounds for b = 64, d = 8)."""
    lower, upper = math.sqrt(64) / d, math.sqrt(64 / d)
    counts = [0] * BINS
    counts[min(BINS - 1, epoch % BINS)] = d - dead
    counts[0] += dead
    return {
        "mean_sv": lower + rho * (upper - lower),
        "sv_lower": lower,
        "sv_upper": upper,
        "sv_position": rho,
        "singular_values": [2.0 / (i + 1 + epoch) for i in range(d)],
        "effective_rank": d * rho + 1,
        "dim_std": [0.5] * d,
        "std_hist": {"edges": [i * 0.25 for i in range(BINS + 1)], "counts": counts},
        "dead_dims": dead,
        "cov_offdiag": 0.01,
        "l2_std": 0.3,
    }


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
            created, _ = submit.create_jobs(
                session=session, data=data, owner_id=self.admin_id, max_attempts=3
            )
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
