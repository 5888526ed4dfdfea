"""``collapsewatch up`` (migrate, serve, one embedded worker: :mod:`app.jobs.embedded`) and
``collapsewatch beat`` (the reaper/sweeper loop alone). Both check their database and broker first and
say in one line which one cannot be reached."""

from __future__ import annotations

import fcntl
import logging
import os
import signal
import socket
import threading
import time
from typing import IO

from app.cli.common import check_broker, describe_storage, reaching_database, sqlite_path
from app.jobs.embedded import GRACEFUL_SHUTDOWN_S, WorkerProcess, worker_command
from app.settings import Settings, get_settings
from collapsewatch.cli import CommandError, redact_url

log = logging.getLogger(__name__)


def check_services(settings: Settings, *, broker: bool = True) -> None:
    """Connect to the database (and the broker) once; one line (CommandError) naming what failed."""
    from sqlalchemy import text

    from app.db import make_engine

    engine = make_engine(settings)
    try:
        with reaching_database(settings), engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    finally:
        engine.dispose()
    if broker:
        check_broker(settings.broker_url)


def local_url(host: str, port: int) -> str:
    """The URL this machine reaches a server listening on ``host:port`` at."""
    return f"http://{'127.0.0.1' if host in ('0.0.0.0', '::', '') else host}:{port}"


def default_public_url(host: str, port: int) -> None:
    """Links the server writes (share links, invitations) name the port it serves on, unless
    COLLAPSEWATCH_PUBLIC_URL says otherwise (a proxy in front, another host name)."""
    if "public_url" not in get_settings().model_fields_set:
        os.environ["COLLAPSEWATCH_PUBLIC_URL"] = local_url(host, port)
        get_settings.cache_clear()


def hold_database(settings: Settings) -> IO[str] | None:
    """One ``collapsewatch up`` per SQLite database: a second one (another port, the same folder) would
    run a second embedded worker and maintenance loop on the same files. An advisory lock next to the
    database, held while this process lives (the OS drops it when the process ends, however it ends).
    None for PostgreSQL (team mode runs several web processes on purpose)."""
    path = sqlite_path(settings.database_url)
    if path is None or not path.parent.is_dir():
        return None  # not SQLite, or a folder that does not exist (reaching_database says so next)
    handle = open(path.with_name(f"{path.name}.up.lock"), "a+")  # noqa: SIM115 (held until exit)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise CommandError(
            f"another `collapsewatch up` is already serving {path}: stop it, or give this one its own "
            "folder with --data DIR"
        ) from None
    return handle


def bind_listening_socket(host: str, port: int) -> socket.socket:
    """Bind ``host:port`` before anything starts, so a port in use is one clear error (not "is up"
    followed by uvicorn dying with the embedded worker already running)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise CommandError(
            f"--port {port}: cannot listen on {host}:{port} ({exc.strerror}); "
            "another server is using it: stop it or pass another --port"
        ) from exc
    sock.set_inheritable(True)
    return sock


def run_up(*, host: str, port: int, gpus: str, worker: bool = True) -> int:
    import uvicorn

    from app.db import Database
    from app.migrate import upgrade

    default_public_url(host, port)
    settings = get_settings()
    print(describe_storage(settings), flush=True)
    check_broker(settings.broker_url)
    held = hold_database(settings)
    database = Database(settings)
    try:
        with reaching_database(settings):
            upgrade(database.engine)
    finally:
        database.dispose()
    listening = bind_listening_socket(host, port)
    url = f"http://{host}:{port}"
    local = local_url(host, port)
    embedded: WorkerProcess | None = None
    if worker:
        argv, env = worker_command(settings=settings, server_url=local, gpus=gpus)
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
    print(
        f"collapsewatch is up at {url}  (broker {redact_url(settings.broker_url)}; Ctrl-C stops)", flush=True
    )
    started = time.monotonic()
    # uvicorn re-raises the signal that stopped it once it is done: handle it here, so that the
    # worker is stopped (below) instead of this process dying with it still running.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: None)
    try:
        server.run(sockets=[listening])
    finally:
        listening.close()
        if embedded is not None:
            code = embedded.stop()
            log.info("embedded worker stopped (code %s) after %.0f s", code, time.monotonic() - started)
        if held is not None:
            held.close()  # the next `up` on this database may start
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
    check_broker(settings.broker_url)
    database = Database(settings)
    with reaching_database(settings):
        upgrade(database.engine)
    queue = JobQueue(settings.broker_url, queue_prefix=settings.queue_prefix)
    store = CheckpointStore.from_settings(settings)
    sweep_after = timedelta(seconds=settings.sweep_after_seconds)
    interval = settings.maintenance_interval_seconds or 5.0
    loop = MaintenanceLoop(
        lock=LeaderLock(database, settings.database_url),
        interval=interval,
        run_tick=lambda: tick(
            database=database,
            queue=queue,
            store=store,
            sweep_after=sweep_after,
            trash_retention=settings.trash_retention,
        ),
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
