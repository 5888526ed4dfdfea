"""An SDK run's heartbeat: a daemon thread that extends the run's lease on the server, so that the
server's reaper can tell a live run from one whose process died (it marks those ``crashed``)."""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING

from collapsewatch.sdk.errors import ApiError, StaleAttempt

if TYPE_CHECKING:
    from collapsewatch.sdk.client import Client

log = logging.getLogger("collapsewatch.sdk")
DEFAULT_LEASE_SECONDS = 60


def heartbeat_interval(lease_seconds: float | None) -> float:
    """A third of the lease the server grants (so two beats may be lost), at least 0.1 s."""
    return max(0.1, (lease_seconds or DEFAULT_LEASE_SECONDS) / 3.0)


class Heartbeat:
    """Beats every ``interval`` seconds until :meth:`stop`. A server outage is simply retried at the
    next beat. A refusal (409: a newer attempt took the run over, or it has ended) stops the beats and
    sets :attr:`refused`; :attr:`cancel_requested` is set when someone asked to cancel the run."""

    def __init__(self, client: Client, run_id: int, attempt: int, interval: float) -> None:
        self.client, self.run_id, self.attempt, self.interval = client, run_id, attempt, interval
        self.cancel_requested = threading.Event()
        self.refused: ApiError | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._loop, name=f"collapsewatch-heartbeat-{run_id}", daemon=True
        )
        self._thread.start()

    def beat(self) -> bool:
        """One heartbeat now (no retries). False when the server refused it; never raises."""
        try:
            answer = self.client.heartbeat(self.run_id, self.attempt, retries=0)
        except (StaleAttempt, ApiError) as exc:
            if exc.status_code in (404, 409):
                self.refused = exc
                return False
            log.warning("run %s: heartbeat refused: %s", self.run_id, exc)
            return True
        except Exception as exc:  # unreachable (ServerUnavailable) or a malformed answer: next beat
            log.debug("run %s: heartbeat failed: %s", self.run_id, exc)
            return True
        if answer.cancel_requested:
            self.cancel_requested.set()
        return True

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            if not self.beat():
                log.info("run %s attempt %s: heartbeats stopped: %s", self.run_id, self.attempt, self.refused)
                return

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout=self.interval + 15)
