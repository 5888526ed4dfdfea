"""``init(mode="disabled")`` (or ``COLLAPSEWATCH_MODE=disabled``): a run whose every call is a no-op,
so a script can keep its logging calls and run with no server, no files and no cost."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any

from collapsewatch.contract import CollapseStatsIn, FinalStatus
from collapsewatch.sdk.run import Run


class DisabledRun(Run):
    """Accepts every :class:`Run` call and does nothing (``log_embeddings`` computes nothing either)."""

    mode = "disabled"

    def __init__(self) -> None:
        self.client, self.id, self.info, self._heartbeat = None, None, None, None
        self.attempt = 0
        self.owns_client = False
        self.finished = False

    def __repr__(self) -> str:
        return "DisabledRun()"

    @property
    def pending(self) -> int:
        return 0

    def log(self, data: Mapping[str, Any], step: int | None = None) -> None:
        return None

    def log_epoch(
        self,
        epoch: int,
        metrics: Mapping[str, Any] | None = None,
        stats: Mapping[str, Any] | CollapseStatsIn | None = None,
        *,
        layers: Mapping[str, Mapping[str, Any] | CollapseStatsIn] | None = None,
    ) -> None:
        return None

    def log_embeddings(
        self,
        embeddings: Any,
        epoch: int,
        metrics: Mapping[str, Any] | None = None,
        *,
        hist_edges: Any = None,
        dead_threshold: float = 1e-3,
    ) -> dict[str, Any] | None:
        return None

    def update_config(self, config: Mapping[str, Any]) -> None:
        return None

    def log_lines(self, lines: Sequence[str]) -> None:
        return None

    def flush(self, timeout: float | None = None) -> bool:
        return True

    def finish(
        self, status: FinalStatus = "succeeded", error: str | None = None, *, timeout: float | None = None
    ) -> bool:
        self.finished = True
        return True

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.finished = True
