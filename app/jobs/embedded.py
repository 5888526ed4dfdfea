"""``collapsewatch up`` and ``collapsewatch beat``.

``up`` is the embedded default: migrations, a worker token for the embedded worker (kept, mode 0600,
in ``ARTIFACT_DIR/.embedded-worker-token``), one Celery worker subprocess on the configured broker
(``sqla+sqlite://`` by default, no services needed) and uvicorn in this process, which also runs the
reaper/sweeper loop. Ctrl-C or SIGTERM stops uvicorn, then the worker (SIGTERM, then SIGKILL after
a grace period); an interrupted run is recovered by the reaper on the next start.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from app.settings import Settings, get_settings

log = logging.getLogger(__name__)
TOKEN_FILE = ".embedded-worker-token"
WORKER_STOP_GRACE_S = 15.0
MAX_WORKER_RESTARTS = 5
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


def run_up(*, host: str, port: int, gpus: str, worker: bool = True) -> int:
    import uvicorn

    from app.db import Database
    from app.migrate import upgrade

    settings = get_settings()
    database = Database(settings)
    try:
        upgrade(database.engine)
    finally:
        database.dispose()
    url = f"http://{host}:{port}"
    local = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::', '') else host}:{port}"
    embedded: WorkerProcess | None = None
    if worker:
        env = dict(
            os.environ,
            WORKER_TOKEN=ensure_worker_token(settings),
            SERVER_URL=local,
            BROKER_URL=settings.broker_url,
            QUEUE_PREFIX=settings.queue_prefix,
        )
        argv = [
            sys.executable,
            "-m",
            "collapsewatch.cli",
            "worker",
            "--gpus",
            gpus,
            "--queues",
            "cpu,gpu,default",
        ]
        embedded = WorkerProcess(argv, env)
        embedded.start()
    config = uvicorn.Config(
        "app.main:app",
        host=host,
        port=port,
        proxy_headers=True,
        log_level="info",
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,  # open SSE streams would hold the shutdown
    )
    server = uvicorn.Server(config)
    print(f"collapsewatch is up at {url}  (broker {_redact(settings.broker_url)}; Ctrl-C stops)", flush=True)
    started = time.monotonic()
    # uvicorn re-raises the signal that stopped it once it is done: handle it here, so that the
    # worker is stopped (below) instead of this process dying with it still running.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: None)
    try:
        server.run()
    finally:
        if embedded is not None:
            code = embedded.stop()
            log.info("embedded worker stopped (code %s) after %.0f s", code, time.monotonic() - started)
    return 0 if server.started else 1


def run_beat() -> int:
    """The reaper/sweeper loop in the foreground (for deployments that run it apart from the web)."""
    from datetime import timedelta

    from app.db import Database
    from app.jobs.maintenance import LeaderLock, MaintenanceLoop, tick
    from app.jobs.queue import JobQueue
    from app.migrate import upgrade
    from app.runs.artifacts import CheckpointStore

    settings = get_settings()
    database = Database(settings)
    upgrade(database.engine)
    queue = JobQueue(settings.broker_url, queue_prefix=settings.queue_prefix)
    store = CheckpointStore.from_settings(settings)
    sweep_after = timedelta(seconds=settings.sweep_after_seconds)
    interval = settings.maintenance_interval_seconds or 5.0
    loop = MaintenanceLoop(
        lock=LeaderLock(database, settings.database_url),
        interval=interval,
        run_tick=lambda: tick(database=database, queue=queue, store=store, sweep_after=sweep_after),
    )
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    print(f"collapsewatch beat: reaper/sweeper every {interval:g} s (Ctrl-C stops)", flush=True)
    loop.start()
    stop.wait()
    loop.stop()
    queue.close()
    database.dispose()
    return 0


def _redact(url: str) -> str:
    if "@" not in url:
        return url
    scheme, _, rest = url.partition("://")
    return f"{scheme}://***@{rest.split('@', 1)[1]}"
