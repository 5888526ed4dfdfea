"""The reaper/sweeper loop, run by one server process at a time.

:class:`LeaderLock` keeps a single leader among the server processes sharing a database: a
session-level advisory lock on PostgreSQL (held by a dedicated connection, released if the process
dies), an exclusive ``flock`` on a file next to the SQLite database otherwise (SQLite is only
shared by processes on one machine). Even without the lock, every action is a conditional UPDATE,
so a double act changes nothing twice.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from app.jobs.reaper import Actions, cancel_unclaimed, orphaned_checkpoints, reap_expired, sweep_queued
from app.models import utcnow
from app.runs.bulk import purge_expired, remove_artifacts

if TYPE_CHECKING:
    from sqlalchemy import Connection

    from app.db import Database
    from app.jobs.queue import JobQueue
    from app.runs.artifacts import CheckpointStore

log = logging.getLogger(__name__)
ADVISORY_KEY = 0x63770001  # "cw" + 1


class LeaderLock:
    def __init__(self, database: Database, database_url: str) -> None:
        self.database = database
        self.database_url = database_url
        self._file: IO[bytes] | None = None
        self._conn: Connection | None = None

    def acquire(self) -> bool:
        """True while this process is the leader (non-blocking; call before each tick)."""
        if self.database.engine.dialect.name == "postgresql":
            return self._acquire_pg()
        return self._acquire_file()

    def _acquire_pg(self) -> bool:
        from sqlalchemy import text

        try:
            if self._conn is not None:
                self._conn.execute(text("SELECT 1"))
                return True
            conn = self.database.engine.connect()
            got = bool(conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": ADVISORY_KEY}).scalar())
            conn.commit()
            if got:
                self._conn = conn
            else:
                conn.close()
            return got
        except Exception as exc:  # connection lost: the lock went with it
            log.warning("leader lock lost (%s)", exc)
            self._drop_conn()
            return False

    def _drop_conn(self) -> None:
        if self._conn is not None:
            try:
                self._conn.invalidate()
                self._conn.close()
            except Exception:  # pragma: no cover - already broken
                pass
            self._conn = None

    def lock_path(self) -> Path:
        path = self.database_url.split("///", 1)[-1].split("?", 1)[0]
        if not path or path == ":memory:" or not self.database_url.startswith("sqlite:///"):
            return Path(".collapsewatch-maintenance.lock")
        return Path(path + ".maintenance.lock")

    def _acquire_file(self) -> bool:
        import fcntl

        if self._file is not None:
            return True
        handle = open(self.lock_path(), "ab")  # noqa: SIM115 - held open while leading
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            return False
        self._file = handle
        return True

    def release(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._conn is not None:
            try:
                from sqlalchemy import text

                self._conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": ADVISORY_KEY})
                self._conn.commit()
                self._conn.close()
            except Exception:
                self._drop_conn()
            self._conn = None


def tick(
    *,
    database: Database,
    queue: JobQueue,
    store: CheckpointStore | None,
    sweep_after: timedelta,
    publish: Callable[[int, str, dict[str, Any]], None] | None = None,
    trash_retention: timedelta | None = None,
) -> Actions:
    """One pass: reap expired leases, end cancelled lost runs, re-send waiting runs, purge runs in
    the trash for longer than ``trash_retention``, drop orphaned checkpoints. Commits, then sends,
    publishes and removes files."""
    purged: list[int] = []
    with database.transaction(write=True) as session:
        actions = reap_expired(session=session)
        actions.extend(cancel_unclaimed(session=session))
        actions.extend(sweep_queued(session=session, older_than=sweep_after))
        if trash_retention is not None:
            purged = purge_expired(session=session, deleted_before=utcnow() - trash_retention)
        orphans = (
            orphaned_checkpoints(session=session, stored_run_ids=store.stored_run_ids()) if store else []
        )
        published = [(e.run_id, e.type, dict(e.payload, event_id=e.id)) for e in actions.events]
    for run_id, status in actions.reaped.items():
        log.info("reaper: run %s -> %s", run_id, status)
    for item in actions.send:
        if queue.send(item.run_id, item.device):
            log.info("sweeper/reaper: sent run %s to its queue", item.run_id)
    if publish is not None:
        for run_id, event_type, payload in published:
            publish(run_id, event_type, payload)
    if purged:
        log.info("trash: purged runs %s (deleted over %s ago)", purged, trash_retention)
        remove_artifacts(store, purged)
    for run_id in orphans:
        if store is not None and store.remove(run_id):
            log.info("removed the checkpoints of deleted run %s", run_id)
    return actions


class MaintenanceLoop:
    """Runs :func:`tick` every ``interval`` seconds in a daemon thread while leader."""

    def __init__(self, *, lock: LeaderLock, interval: float, run_tick: Callable[[], object]) -> None:
        self.lock = lock
        self.interval = interval
        self.run_tick = run_tick
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self.run_forever, name="collapsewatch-reaper", daemon=True)
        self._thread.start()

    def run_forever(self) -> None:
        while not self._stop.is_set():
            try:
                if self.lock.acquire():
                    self.run_tick()
            except Exception:
                log.exception("reaper/sweeper tick failed; retrying in %.1f s", self.interval)
            self._stop.wait(self.interval)
        self.lock.release()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
