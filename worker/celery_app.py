"""The worker's Celery application (``celery -A worker.celery_app worker``).

Early ack (``acks_late=False``) and prefetch 1: a message only carries a run id, and the database
(through the claim and its lease) decides who works on what; a worker that dies mid-run is recovered
by the server's reaper, never by a broker redelivery. The parent process never imports torch: CUDA is
initialised only inside the task, in a pool child pinned to one GPU (see :func:`pin_child_device`).
"""

from __future__ import annotations

import logging
import os
from typing import Any

from celery import Celery
from celery.signals import worker_process_init

from worker.settings import GPU_SLOTS_ENV, QUEUE_CLASSES, get_worker_settings

# Set by ``collapsewatch worker`` for the parent: the GPU index each pool child is pinned to
# ("" = hide all GPUs from the children). Unset = leave CUDA_VISIBLE_DEVICES alone.

log = logging.getLogger(__name__)
logging.getLogger("httpx").setLevel(logging.WARNING)  # one INFO line per API call is too chatty


def broker_options(broker_url: str) -> dict[str, Any]:
    """Celery settings that depend on the broker (shared with the server's sender)."""
    if broker_url.startswith(("redis://", "rediss://")):
        return {
            "broker_transport_options": {"socket_connect_timeout": 3, "socket_timeout": 10},
            "worker_disable_prefetch": True,
        }
    if broker_url.startswith(("sqla+", "sqlalchemy+")):
        # The SQL transport passes its options to create_engine: SQLite needs a busy timeout for
        # concurrent processes. It has no fanout, so remote control (pidbox) is off.
        options: dict[str, Any] = {}
        if "sqlite" in broker_url:
            options["connect_args"] = {"timeout": 30}
        return {"broker_transport_options": options, "worker_enable_remote_control": False}
    return {}


def create_celery(broker_url: str | None = None, queue_prefix: str | None = None) -> Celery:
    settings = get_worker_settings()
    broker = broker_url or settings.broker_url
    prefix = settings.queue_prefix if queue_prefix is None else queue_prefix
    app = Celery("collapsewatch-worker", broker=broker, include=["worker.tasks"])
    app.conf.update(
        task_acks_late=False,
        worker_prefetch_multiplier=1,
        task_ignore_result=True,
        task_default_queue=f"{prefix}default",
        task_serializer="json",
        accept_content=["json"],
        worker_send_task_events=False,
        worker_hijack_root_logger=False,
        broker_connection_retry_on_startup=True,
        worker_cancel_long_running_tasks_on_connection_loss=False,
        **broker_options(broker),
    )
    return app


def worker_queues(queue_prefix: str, use_gpus: bool) -> list[str]:
    """A GPU worker consumes ``gpu`` and ``default``; a CPU worker ``cpu`` and ``default``."""
    classes = ("gpu", "default") if use_gpus else ("cpu", "default")
    assert set(classes) <= set(QUEUE_CLASSES)
    return [f"{queue_prefix}{name}" for name in classes]


def pin_child_device(index: int, slots: str | None) -> str | None:
    """CUDA_VISIBLE_DEVICES for pool child ``index`` given the comma list of GPU slots."""
    if slots is None:
        return None
    gpus = [s for s in slots.split(",") if s.strip()]
    if not gpus:
        return ""
    return gpus[index % len(gpus)]


@worker_process_init.connect
def _pin_on_child_start(**_: Any) -> None:
    from billiard.process import current_process

    index = getattr(current_process(), "index", 0) or 0
    value = pin_child_device(int(index), os.environ.get(GPU_SLOTS_ENV))
    if value is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = value
        log.info("pool child %s pinned to CUDA_VISIBLE_DEVICES=%r", os.getpid(), value)


app = create_celery()
celery = app
