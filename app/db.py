"""Engines and sessions.

SQLite runs in WAL mode with a busy timeout and foreign keys on; write transactions start with
``BEGIN IMMEDIATE`` so that concurrent writers queue on the busy timeout instead of failing on a
read-to-write lock upgrade. PostgreSQL goes through psycopg 3 (``postgresql+psycopg://``) with
a pool that keeps as many connections as the thread pool has threads (40, anyio's default): with 10
kept and the rest as overflow, every burst opened and closed PostgreSQL connections (a backend
forked each time), which stalled every request in flight (seen as the epoch PUT p99 of
``bench.load``).

Connections are not pinged at every checkout (``pool_pre_ping`` costs a round trip per request):
only one that sat in the pool for ``PING_AFTER_IDLE_S`` or longer is, and one that fails the ping
is replaced. The pool hands out the most recently returned connection first (LIFO), so under light
traffic the same few stay warm while the rest idle. A connection that dies while in use (a restart
under load) fails its request with a disconnect error, answered 503 (``app.api.errors``), and
SQLAlchemy then replaces every pooled connection older than that failure at its next checkout.

JSON columns are written with pydantic-core's serializer (:func:`json_text`): the same JSON as the
standard library's ``json.dumps`` for what the app stores (NaN and infinities included, as
``NaN``/``Infinity``), about nine times faster on an epoch record's lists of floats.

Sessions are opened at the edge (a FastAPI dependency, a CLI command) and passed keyword-only to
domain functions, which never create one.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from pydantic_core import PydanticSerializationError, to_json
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.orm import Session, sessionmaker

from app.settings import Settings

WRITE_OPTION = "cw_write"
PG_POOL_SIZE, PG_POOL_OVERFLOW = 40, 10  # kept open / extra under a spike (closed when returned)
PG_ASYNC_POOL_SIZE = 8  # the event loop's own connections (app.driver_pool): one-statement writes
PING_AFTER_IDLE_S = 5.0
# SQLite: the WAL file is cut back to this size when a connection starts it over (every connection:
# app.loop_sqlite reads the file's size to know when a checkpoint is due)
SQLITE_WAL_LIMIT_BYTES = 4 * 1024 * 1024
# every SQLite connection's settings (app.loop_sqlite's connection too, with its own busy handling)
SQLITE_PRAGMAS = ("PRAGMA foreign_keys=ON", "PRAGMA synchronous=NORMAL")
_IDLE_SINCE = "cw_idle_since"


def json_text(value: Any) -> str:
    """A JSON column's text (``json.dumps`` compatible for JSON values; see the module docstring).
    A string pydantic-core cannot write (a lone surrogate, ``"\\ud800"`` in a request's JSON, which
    is valid JSON and a valid Python str) goes through ``json.dumps``, which escapes it as before."""
    try:
        return to_json(value, inf_nan_mode="constants").decode()
    except PydanticSerializationError:
        return json.dumps(value)


def make_engine(settings: Settings) -> Engine:
    """An engine for ``settings.database_url`` with the per-dialect setup described above."""
    url = settings.database_url
    if not url.startswith("sqlite"):
        engine = create_engine(
            url,
            pool_size=PG_POOL_SIZE,
            max_overflow=PG_POOL_OVERFLOW,
            pool_use_lifo=True,
            json_serializer=json_text,
        )
        ping_after_idle(engine, PING_AFTER_IDLE_S)
        return engine
    timeout_s = settings.sqlite_busy_timeout_ms / 1000
    connect_args = {"timeout": timeout_s, "check_same_thread": False}
    engine = create_engine(url, connect_args=connect_args, json_serializer=json_text)
    busy_ms = settings.sqlite_busy_timeout_ms

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we emit BEGIN ourselves (below)
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_ms)}")
        for pragma in SQLITE_PRAGMAS:
            cursor.execute(pragma)
        cursor.execute(f"PRAGMA journal_size_limit={SQLITE_WAL_LIMIT_BYTES}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        write = conn.get_execution_options().get(WRITE_OPTION, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

    return engine


def ping_after_idle(engine: Engine, idle_s: float) -> None:
    """Ping a pooled connection at checkout only when it has been idle for ``idle_s`` or longer; one
    that fails is replaced (``DisconnectionError`` makes the pool invalidate it and connect anew)."""

    @event.listens_for(engine, "checkin")
    def _checked_in(_dbapi_connection: Any, record: Any) -> None:
        record.info[_IDLE_SINCE] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _checked_out(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        since = record.info.pop(_IDLE_SINCE, None)
        if since is None or time.monotonic() - since < idle_s:
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
        except Exception as exc:  # the driver's own error class: any failure means a dead connection
            raise DisconnectionError(f"a pooled connection idle for {idle_s:g} s failed its ping") from exc


class Database:
    """An engine plus two session factories: reads (deferred) and writes (``BEGIN IMMEDIATE`` on SQLite)."""

    def __init__(self, settings: Settings) -> None:
        self.engine = make_engine(settings)
        self.read_sessions = sessionmaker(self.engine, expire_on_commit=False)
        write_engine = self.engine.execution_options(**{WRITE_OPTION: True})
        self.write_sessions = sessionmaker(write_engine, expire_on_commit=False)

    def session(self, *, write: bool) -> Session:
        return (self.write_sessions if write else self.read_sessions)()

    @contextmanager
    def transaction(self, *, write: bool = True) -> Iterator[Session]:
        """A session committed on success and rolled back on error (CLI and background code)."""
        with self.session(write=write) as session:
            try:
                yield session
                session.commit()
            except BaseException:
                session.rollback()
                raise

    def dispose(self) -> None:
        self.engine.dispose()
