"""Collapse detection for the run page: a plain function over the per-epoch statistics.

Two signals, both judged on the *current* state of the run (an episode that recovered raises nothing):

- ``rho``: the SVMax position rho = (s_mu - L) / (U - L) is below ``rho_threshold`` at the newest epoch;
  the alert starts at the first epoch of that unbroken below-threshold stretch.
- ``dead_dims``: the number of dead dimensions at the newest epoch is above the count at the first
  recorded epoch; the alert starts at the first epoch of that unbroken above-baseline stretch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

DEFAULT_RHO_THRESHOLD = 0.15


@dataclass(frozen=True)
class EpochPoint:
    """The two statistics detection needs for one epoch (``None`` where not recorded)."""

    epoch: int
    sv_position: float | None
    dead_dims: int | None


@dataclass(frozen=True)
class CollapseAlert:
    kind: Literal["rho", "dead_dims"]
    began_epoch: int
    current: float
    reference: float

    @property
    def message(self) -> str:
        if self.kind == "rho":
            return (
                f"Collapse detected: rho = {self.current:.3f} is below {self.reference:g} "
                f"since epoch {self.began_epoch}."
            )
        return (
            f"Collapse detected: dead dimensions rose to {int(self.current)} "
            f"(from {int(self.reference)} at the first epoch) since epoch {self.began_epoch}."
        )


def _streak_start(epochs: Sequence[int], flagged: Sequence[bool]) -> int | None:
    """The epoch where the final unbroken run of flagged points begins, or None if the last isn't."""
    if not flagged or not flagged[-1]:
        return None
    start = len(flagged) - 1
    while start > 0 and flagged[start - 1]:
        start -= 1
    return epochs[start]


def detect_collapse(
    epochs: Sequence[EpochPoint], *, rho_threshold: float = DEFAULT_RHO_THRESHOLD
) -> list[CollapseAlert]:
    """Alerts for the run's current state, ordered rho first. Epochs may arrive unsorted."""
    alerts: list[CollapseAlert] = []
    rho = sorted((p.epoch, p.sv_position) for p in epochs if p.sv_position is not None)
    began = _streak_start([e for e, _ in rho], [v < rho_threshold for _, v in rho])
    if began is not None:
        alerts.append(CollapseAlert("rho", began, float(rho[-1][1]), rho_threshold))
    dead = sorted((p.epoch, p.dead_dims) for p in epochs if p.dead_dims is not None)
    if dead:
        baseline = dead[0][1]
        began = _streak_start([e for e, _ in dead], [v > baseline for _, v in dead])
        if began is not None:
            alerts.append(CollapseAlert("dead_dims", began, float(dead[-1][1]), float(baseline)))
    return alerts
