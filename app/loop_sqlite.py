"""One SQLite connection for the event loop's own short writes: SQLite's counterpart of ``app.driver_pool``.

On SQLite an epoch PUT went to the thread pool for a write of a few hundred microseconds, and the
trip there and back, with the session machinery around the statements, cost more than the write
(issue 19). Here the event loop runs such a write itself, in one go, with no ``await`` inside the
transaction:

- the connection never waits for a lock: its busy timeout is 0. When another connection holds the
  database's write lock (a metrics batch in a thread, the embedded worker), ``BEGIN IMMEDIATE``
  fails at once and :class:`LoopBusy` sends the caller to its usual path in a thread, which waits on
  the busy timeout as before. The event loop never sleeps on SQLite;
- in WAL mode with ``synchronous=NORMAL`` (``app.db``'s pragmas) a commit appends to the WAL without
  an fsync. Checkpoints (the WAL copied back into the database file, with an fsync: up to 10 ms on
  this machine) are not left to this connection's commits (``wal_autocheckpoint=0``): once the WAL
  holds ``WAL_LIMIT_BYTES`` (SQLite's own default: 1,000 pages) or ``CHECKPOINT_EVERY`` commits
  since the last one, the caller awaits a passive checkpoint in a thread (:meth:`checkpoint_if_due`)
  before it answers, as a session's commit runs SQLite's own checkpoint before it returns. A client
  that writes one epoch after another lets it finish, the WAL starts over, and ``journal_size_limit``
  (set on every connection, ``app.db``'s too) cuts the file back to the limit: the file grows past
  it only with that much new WAL;
- only small bodies (``MAX_BODY_BYTES``; an epoch at d = 128 is ~7 KB) are written here: a 660 KB
  epoch held the event loop 3 to 6 ms, so a bigger one takes the usual path in a thread;
- the work decides: a result commits, None rolls back (nothing written). A driver error rolls back
  and comes back as SQLAlchemy's ``DBAPIError``, as the session would raise it;
- one connection per process (opened at first use: a forked server process opens its own), used by
  one caller at a time: a second caller meanwhile (another thread's event loop) gets ``LoopBusy``.

Not for an in-memory database (another connection would open another, empty one): the URL's
in-memory forms get no loop connection, and one that opens a database with no file (a URI form
missed) is closed and never used.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import anyio.to_thread
from sqlalchemy import ColumnElement, Engine
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError

from app.db import SQLITE_PRAGMAS, SQLITE_WAL_LIMIT_BYTES

log = logging.getLogger(__name__)
T = TypeVar("T")
WAL_LIMIT_BYTES = SQLITE_WAL_LIMIT_BYTES  # a checkpoint is due past this (SQLite's own: 1,000 4 KB pages)
PRAGMAS = (*SQLITE_PRAGMAS, "PRAGMA busy_timeout=0", "PRAGMA wal_autocheckpoint=0")
CHECKPOINT_EVERY = 100  # commits, whatever the WAL's size
MAX_BODY_BYTES = 64 * 1024  # bigger requests write in a thread
_BUSY_CODES = (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
Codec = Callable[[Any], Any]


class LoopBusy(Exception):
    """The database's write lock (or this connection) is taken: write some other way."""


class LoopSqlite:
    def __init__(
        self, connect_args: tuple[Any, ...], connect_kwargs: dict[str, Any], dialect: Dialect
    ) -> None:
        self.connect_args = connect_args
        self.connect_kwargs = connect_kwargs
        self.dialect = dialect
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._pid = 0
        self._commits = 0  # since the last checkpoint
        self._wal = ""  # the WAL file's path, once connected
        self._disabled = False  # connected to a database with no file (in memory): never used

    def write(self, work: Callable[[sqlite3.Connection], T | None]) -> T | None:
        """``work(connection)`` inside ``BEGIN IMMEDIATE``, run at once (the event loop waits for
        nothing in between): committed when it returns a value, rolled back when it returns None.
        :class:`LoopBusy` when the write lock is held elsewhere. Then, once the caller has done what
        follows the commit (its answer, its events), :meth:`checkpoint_if_due`."""
        result = self._write(work)
        if result is not None:
            self._commits += 1
        return result

    async def checkpoint_if_due(self) -> None:
        """A passive checkpoint in a thread, awaited, when :meth:`checkpoint_due`."""
        if self.checkpoint_due():
            await anyio.to_thread.run_sync(self.checkpoint)

    def checkpoint_due(self) -> bool:
        if self._commits >= CHECKPOINT_EVERY:
            return True
        try:
            return os.stat(self._wal).st_size > WAL_LIMIT_BYTES
        except OSError:  # no WAL file (not in WAL mode): SQLite has nothing to checkpoint
            return False

    def checkpoint(self) -> bool:
        """A passive checkpoint on this connection (False when the connection is in use)."""
        if not self._lock.acquire(blocking=False):
            return False
        try:
            self._connection().execute("PRAGMA wal_checkpoint(PASSIVE)")
            self._commits = 0
        except sqlite3.Error:  # the next one does it (or any other connection's)
            log.warning("a WAL checkpoint failed", exc_info=True)
            return False
        finally:
            self._lock.release()
        return True

    def _write(self, work: Callable[[sqlite3.Connection], T | None]) -> T | None:
        if not self._lock.acquire(blocking=False):
            raise LoopBusy("the event loop's SQLite connection is in use")
        try:
            try:
                conn = self._connection()
            except sqlite3.Error as exc:
                raise _translated(exc, self.dialect) from exc
            try:
                conn.execute("BEGIN IMMEDIATE")
                result = work(conn)
                conn.execute("COMMIT" if result is not None else "ROLLBACK")
                return result
            except BaseException as exc:
                self._rollback(conn)
                if isinstance(exc, sqlite3.Error):
                    raise _translated(exc, self.dialect) from exc
                raise
        finally:
            self._lock.release()

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
            self._conn = None

    def _connection(self) -> sqlite3.Connection:
        if self._disabled:
            raise LoopBusy("the database has no file (in memory): no connection of the event loop's")
        if self._conn is None or self._pid != os.getpid():
            own = {"timeout": 0, "isolation_level": None, "check_same_thread": False}
            conn = sqlite3.connect(*self.connect_args, **(self.connect_kwargs | own))
            try:
                path = conn.execute("PRAGMA database_list").fetchone()[2]  # (seq, name, file) of main
                if not path:
                    self._disabled = True
                    raise LoopBusy("the database has no file (in memory): no connection of the event loop's")
                for pragma in (*PRAGMAS, f"PRAGMA journal_size_limit={int(WAL_LIMIT_BYTES)}"):
                    conn.execute(pragma)
            except BaseException:
                conn.close()
                raise
            self._conn, self._pid, self._wal = conn, os.getpid(), f"{path}-wal"
        return self._conn

    def _rollback(self, conn: sqlite3.Connection) -> None:
        if not conn.in_transaction:
            return
        try:
            conn.execute("ROLLBACK")
        except sqlite3.Error:  # the connection's state is unknown: the next write opens another
            conn.close()
            self._conn = None


def _translated(exc: sqlite3.Error, dialect: Dialect) -> Exception:
    """:class:`LoopBusy` for a lock held elsewhere, else the error as SQLAlchemy's ``DBAPIError``."""
    if isinstance(exc, sqlite3.OperationalError) and _busy(exc):
        return LoopBusy("another connection holds the database's lock")
    return DBAPIError.instance(None, None, exc, sqlite3.Error, dialect=dialect)


def _busy(exc: sqlite3.OperationalError) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in _BUSY_CODES  # extended codes (SQLITE_BUSY_SNAPSHOT …) keep the primary
    return "locked" in str(exc) or "busy" in str(exc)


def loop_sqlite_for(engine: Engine) -> LoopSqlite | None:
    """A loop connection to ``engine``'s SQLite database file, opened with the arguments SQLAlchemy's
    pysqlite dialect gives the driver for the same URL; None for PostgreSQL and in-memory databases."""
    if engine.dialect.name != "sqlite":
        return None
    database = engine.url.database or ""
    in_memory = not database or ":memory:" in database or "mode=memory" in database
    in_memory = in_memory or engine.url.query.get("mode") == "memory"
    if in_memory:
        return None
    args, kwargs = engine.dialect.create_connect_args(engine.url)
    return LoopSqlite(tuple(args), dict(kwargs), engine.dialect)


def bind_processor(column: ColumnElement[Any], dialect: Dialect) -> Codec:
    """The column's bind processor as SQLAlchemy runs it on ``dialect`` (the type adapted to the
    dialect first: a DateTime's SQLite text format belongs to the adapted type), so that a value
    written here is stored as the session would store it."""
    found: Codec | None = column.type.dialect_impl(dialect).bind_processor(dialect)
    return found or (lambda value: value)
