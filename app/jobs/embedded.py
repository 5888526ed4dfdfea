"""The embedded worker of ``collapsewatch up`` (the command itself is :mod:`app.cli.up`).

``up`` is the embedded default: migrations, a worker token for the embedded worker (kept, mode 0600,
in ``ARTIFACT_DIR/.embedded-worker-token``), one Celery worker subprocess on the configured broker
(``sqla+sqlite://`` by default, no services needed) and uvicorn in the command's process, which also
runs the reaper/sweeper loop. Ctrl-C or SIGTERM stops uvicorn, then the worker (SIGTERM, then SIGKILL
after a grace period); an interrupted run is recovered by the reaper on the next start.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

from app.settings import Settings

log = logging.getLogger(__name__)
TOKEN_FILE = ".embedded-worker-token"
WORKER_STOP_GRACE_S = 15.0
MAX_WORKER_RESTARTS = 5
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
GRACEFUL_SHUTDOWN_S = 5  # uvicorn's --timeout-graceful-shutdown (also `serve` and docker-compose)


def ensure_worker_token(settings: Settings) -> str:
    """The embedded worker's token: the stored one if still valid, else a new worker token."""
    from app.auth.token_file import ensure_token_file
    from app.db import Database

    database = Database(settings)
    try:
        token, _ = ensure_token_file(
            database=database, path=Path(settings.artifact_dir) / TOKEN_FILE,
            admin_email=settings.admin_email, kind="worker", name="embedded worker",
        )  # fmt: skip
    finally:
        database.dispose()
    return token


class WorkerProcess:
    """The embedded Celery worker (its own process group), restarted if it dies unexpectedly."""

    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        self.argv, self.env = argv, env
        self.proc: subprocess.Popen[bytes] | None = None
        self._stopping = threading.Event()
        self._watch = threading.Thread(target=self._watchdog, name="embedded-worker-watch", daemon=True)

    def start(self) -> None:
        self.proc = subprocess.Popen(self.argv, env=self.env, start_new_session=True)
        self._watch.start()

    def _watchdog(self) -> None:
        restarts = 0
        while not self._stopping.wait(1.0):
            if self.proc is None or self.proc.poll() is None:
                continue
            if restarts >= MAX_WORKER_RESTARTS:
                log.error("the embedded worker keeps exiting (code %s); not restarting", self.proc.returncode)
                return
            restarts += 1
            log.warning("the embedded worker exited (code %s); restarting it", self.proc.returncode)
            self.proc = subprocess.Popen(self.argv, env=self.env, start_new_session=True)

    def stop(self) -> int | None:
        self._stopping.set()
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return proc.returncode if proc else None
        _signal_group(proc, signal.SIGTERM)
        try:
            return proc.wait(timeout=WORKER_STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            _signal_group(proc, signal.SIGKILL)
            return proc.wait(timeout=10)


def _signal_group(proc: subprocess.Popen[bytes], sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)


def worker_command(*, settings: Settings, server_url: str, gpus: str) -> tuple[list[str], dict[str, str]]:
    """The embedded worker's argv and environment: ``collapsewatch worker`` on this server's broker
    and queue prefix, with the embedded worker token (prefixed settings: no deprecation warnings).

    Its jobs run with one torch / OpenMP / BLAS thread unless the environment names a number: the
    embedded worker shares the machine with the server, and the engine's small models gain nothing
    from more threads (on two shared cores a second thread made the demo's runs several times slower)."""
    threads = {name: os.environ.get(name) or "1" for name in THREAD_VARIABLES}
    env = dict(
        os.environ,
        **threads,
        COLLAPSEWATCH_WORKER_TOKEN=ensure_worker_token(settings),
        COLLAPSEWATCH_SERVER_URL=server_url,
        COLLAPSEWATCH_BROKER_URL=settings.broker_url,
        COLLAPSEWATCH_QUEUE_PREFIX=settings.queue_prefix,
    )
    argv = [
        sys.executable, "-m", "collapsewatch.cli", "worker", "--gpus", gpus, "--queues", "cpu,gpu,default",
        "--wait-server", "600",  # it starts before uvicorn listens
    ]  # fmt: skip
    return argv, env
