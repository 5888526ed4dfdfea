"""The per-epoch record handed to the ``on_epoch`` hook, and its JSON form (``contract.EpochIn``)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

# Keys every record's ``metrics`` carries (value None when not applicable or not finite).
METRIC_KEYS: tuple[str, ...] = (
    "train_loss",
    "val_acc",
    "knn_acc",
    "recall_at_1",
    "lr",
    "seconds",
    "reg_loss",
)


def finite_or_none(value: float | int | None) -> float | None:
    """A JSON-safe scalar: NaN and +-Inf become None (the wire contract's "not finite")."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


@dataclass(frozen=True)
class EpochRecord:
    """One finished epoch (1-based). ``metrics`` holds :data:`METRIC_KEYS` plus extras (e.g. the
    objective's parts); ``stats`` is :func:`collapsewatch.stats.collapse_stats` on the fixed probe set, or
    None when the embeddings were not finite (diverged run); ``layers`` the statistics of the
    ``stats_layers`` by name (empty when none were asked for)."""

    epoch: int
    metrics: dict[str, float | None]
    stats: dict[str, Any] | None = None
    layers: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_json(self, attempt: int = 1) -> dict[str, Any]:
        """The ``PUT /api/v1/runs/{id}/epochs/{epoch}`` body (``collapsewatch.contract.EpochIn``);
        ``layers`` only when there are some (a server without the key keeps working)."""
        body: dict[str, Any] = {
            "attempt": attempt,
            "metrics": {k: finite_or_none(v) for k, v in self.metrics.items()},
            "stats": self.stats,
        }
        if self.layers:
            body["layers"] = self.layers
        return body

    def to_line(self) -> dict[str, Any]:
        """The CLI's JSON line: the wire body plus ``epoch``."""
        body = self.to_json()
        del body["attempt"]
        return {"epoch": self.epoch, **body}
