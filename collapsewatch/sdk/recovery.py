"""Delivering spooled writes (see :mod:`collapsewatch.sdk.spool`): one write at a time, the spool
files that earlier processes left behind, and the background thread that re-sends them."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import httpx

from collapsewatch.sdk.errors import Conflict, ServerUnavailable, StaleAttempt
from collapsewatch.sdk.outbox import backoff_delay
from collapsewatch.sdk.spool import Entry, leftover_files, log_rejection, replay_file

API = "/api/v1"


class SpoolRecovery:
    """Mixed into :class:`collapsewatch.sdk.client.Client`: what it needs from the client is below."""

    spool_dir: Path
    backoff: float
    backoff_max: float
    _closed: threading.Event
    _recovery: threading.Thread | None

    def request(  # pragma: no cover - implemented by Client
        self, method: str, path: str, *, json: Any = None, retries: int | None = None,
        conflict: type[Conflict] = Conflict,
    ) -> httpx.Response:  # fmt: skip
        raise NotImplementedError

    def send_entry(self, entry: Entry, *, retries: int | None = None) -> None:
        """Deliver one queued or spooled write. Its body was validated when it was logged, and the
        server validates it again."""
        run_id, kind = int(entry["run"]), entry["kind"]
        if kind == "epoch":
            path = f"/runs/{run_id}/epochs/{int(entry['epoch'])}"
            self.request("PUT", API + path, json=entry["body"], retries=retries, conflict=StaleAttempt)
        elif kind in ("metrics", "logs", "finish", "config"):
            path = f"/runs/{run_id}/{kind}"
            self.request("POST", API + path, json=entry["body"], retries=retries, conflict=StaleAttempt)
        else:
            raise ValueError(f"unknown spool entry kind {kind!r}")

    def flush_spool(self, *, retries: int | None = None) -> tuple[int, int]:
        """Re-send the writes left in the spool by earlier runs (e.g. a process that ended while the
        server was down), file by file, in order; each request is retried ``retries`` times (default
        ``max_retries``). Safe to repeat: every write is idempotent on the server.

        Returns ``(delivered, left)``; ``left`` > 0 means the server is still unreachable (or a live
        run, here or in another process, still holds its spool file)."""
        delivered = left = 0
        for path in leftover_files(self.spool_dir):
            done, rest = replay_file(
                path,
                lambda e: self.send_entry(e, retries=retries),
                retryable=(ServerUnavailable,),
                on_rejected=log_rejection,
            )
            delivered, left = delivered + done, left + rest
        return delivered, left

    def start_recovery(self) -> None:
        """Re-send leftover spool files in a background thread until they are gone."""
        running = self._recovery is not None and self._recovery.is_alive()
        if running or not leftover_files(self.spool_dir):
            return
        self._recovery = threading.Thread(target=self._recover, name="collapsewatch-recovery", daemon=True)
        self._recovery.start()

    def _recover(self) -> None:
        failures = 0
        while not self._closed.is_set():
            _, left = self.flush_spool(retries=0)
            if not left:
                return
            failures += 1
            self._closed.wait(backoff_delay(failures, self.backoff, self.backoff_max))
