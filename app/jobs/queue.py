"""Enqueue training jobs by task name (the server never imports worker/ or torch).

The broker only carries run ids; the database is the source of truth. Sending is best effort: a
run is committed as ``queued`` before it is sent, so a send that fails (broker down) loses nothing —
the sweeper (:mod:`app.jobs.reaper`) re-sends runs that stay queued.

Queues by device class (the worker's ``worker.settings.QUEUE_CLASSES``): ``device="cpu"`` goes to
``cpu``, ``"cuda"``/``"cuda:N"`` to ``gpu``, and ``"auto"`` to ``default``, which every worker
consumes. All names carry the ``QUEUE_PREFIX`` setting (shared with the workers).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from collapsewatch.contract import TASK_NAME

if TYPE_CHECKING:
    from celery import Celery

    from app.db import Database


log = logging.getLogger(__name__)


def device_class(device: str | None) -> str:
    """The queue class of a job's ``device`` setting."""
    if device == "cpu":
        return "cpu"
    if device is not None and device.startswith("cuda"):
        return "gpu"
    return "default"


def sender_options(broker_url: str) -> dict[str, Any]:
    """Broker settings for a sender: fail fast when the broker is down (the sweeper retries)."""
    if broker_url.startswith(("redis://", "rediss://")):
        options = {"socket_connect_timeout": 2, "socket_timeout": 5, "max_retries": 1, "interval_start": 0.2}
        return {"broker_transport_options": options, "broker_connection_timeout": 2}
    if broker_url.startswith(("sqla+", "sqlalchemy+")) and "sqlite" in broker_url:
        return {"broker_transport_options": {"connect_args": {"timeout": 30}}}
    return {}


class JobQueue:
    """A Celery app configured with only the broker, used to send ``train_run`` by name.

    After a failed send, sends fail at once for ``cooldown`` seconds (a down broker must not make
    every submission of a sweep wait for a connection timeout); the sweeper re-sends those runs."""

    def __init__(self, broker_url: str, *, queue_prefix: str = "", cooldown: float = 10.0) -> None:
        self.broker_url = broker_url
        self.queue_prefix = queue_prefix
        self.cooldown = cooldown
        self._celery: Celery | None = None
        self._lock = threading.Lock()
        self._failed_at: float | None = None

    @property
    def celery(self) -> Celery:
        with self._lock:
            if self._celery is None:
                from celery import Celery

                app = Celery("collapsewatch-server", broker=self.broker_url, set_as_current=False)
                app.conf.update(
                    task_serializer="json",
                    accept_content=["json"],
                    broker_connection_retry=False,
                    broker_connection_max_retries=0,
                    **sender_options(self.broker_url),
                )
                self._celery = app
            return self._celery

    def queue_name(self, device: str | None) -> str:
        return f"{self.queue_prefix}{device_class(device)}"

    def send(self, run_id: int, device: str | None) -> bool:
        """Send run ``run_id`` to its queue. False (logged) when the broker cannot take it now."""
        queue = self.queue_name(device)
        failed_at = self._failed_at
        if failed_at is not None and time.monotonic() - failed_at < self.cooldown:
            log.warning("broker unavailable: run %s stays queued; the sweeper will send it", run_id)
            return False
        try:
            self.celery.send_task(TASK_NAME, args=[int(run_id)], queue=queue, retry=False)
        except Exception as exc:  # broker down: the sweeper re-sends the still-queued run
            self._failed_at = time.monotonic()
            log.warning("could not send run %s to queue %s (%s); the sweeper will retry", run_id, queue, exc)
            return False
        self._failed_at = None
        return True

    def close(self) -> None:
        with self._lock:
            if self._celery is not None:
                self._celery.close()
                self._celery = None


def run_device(config: dict[str, Any] | None) -> str:
    """The ``device`` of a job run's stored spec (``"auto"`` when absent)."""
    value = (config or {}).get("device")
    return value if isinstance(value, str) else "auto"


def make_enqueue(queue: JobQueue, *, database: Database) -> Callable[[int], bool]:
    """``app.state.enqueue``: look up the committed run's device and send it to its queue."""

    def enqueue(run_id: int) -> bool:
        from app.models import Run

        with database.session(write=False) as session:
            run = session.get(Run, run_id)
            if run is None:
                log.warning("enqueue: run %s does not exist (not committed?)", run_id)
                return False
            device = run_device(run.config)
        return queue.send(run_id, device)

    return enqueue
