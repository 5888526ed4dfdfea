"""A few psycopg async connections, for the one statement that the event loop runs itself.

An epoch PUT (``app.series.epoch_pg``) is one autocommitted statement on PostgreSQL. Run on the
SQLAlchemy pool it needed the thread pool (a plain ``def`` route), and the trip there and back was
the largest cost of the request after the statement itself (issue 19). Here the event loop sends
it on an ``AsyncConnection`` and does other work until PostgreSQL answers: no thread, no GIL hand-off.

The same rules as the SQLAlchemy pool of ``app.db``:

- at most ``size`` connections, opened when needed, kept, most recently used first. When all are in
  use :class:`PoolBusy` is raised at once, never waited for: the caller then takes its usual path (a
  few statements waiting on one run's row lock must not hold up every other run's writes);
- one that sat idle for ``ping_after_idle_s`` or longer is pinged first and replaced when dead;
- a driver error comes back as SQLAlchemy's ``DBAPIError`` (``app.api.errors`` answers a lost
  connection 503, with Retry-After); a connection that failed is closed, never handed out again, and
  a lost one takes the idle ones with it (opened before the failure: a restart killed them too);
- ``aclose`` (the app's shutdown) closes them; one in use at the time is closed when it comes back.
  Connections belong to the event loop that opened them: the first use in another loop (a test
  client started again) drops the old ones.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import psycopg
from psycopg.conninfo import make_conninfo
from sqlalchemy import Engine
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError


class PoolBusy(Exception):
    """Every connection of the pool is in use: run the statement some other way."""


class AsyncDriverPool:
    def __init__(self, conninfo: str, dialect: Dialect, *, size: int, ping_after_idle_s: float) -> None:
        self.conninfo = conninfo
        self.dialect = dialect
        self.size = size
        self.ping_after_idle_s = ping_after_idle_s
        self._idle: list[tuple[psycopg.AsyncConnection[Any], float]] = []  # (connection, idle since)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._slots = asyncio.Semaphore(size)
        self._generation = 0  # bumped by aclose: a connection out at the time is closed on its return

    async def first_row(self, sql: str, params: dict[str, Any]) -> tuple[Any, ...] | None:
        """Run ``sql`` (psycopg's ``%(name)s`` style) in autocommit; its first row. :class:`PoolBusy`
        when all ``size`` connections are in use."""
        self._in_this_loop()
        if self._slots.locked():
            raise PoolBusy(f"all {self.size} connections are in use")
        async with self._slots:  # free: taken without waiting
            generation = self._generation
            conn = await self._checkout()
            try:
                cursor = await conn.execute(sql, params)
                row: tuple[Any, ...] | None = await cursor.fetchone()
            except psycopg.Error as exc:
                lost = conn.closed or conn.broken
                await self._checkin(conn, discard=lost or generation != self._generation)
                if lost:
                    await self.aclose()
                raise DBAPIError.instance(
                    sql, params, exc, psycopg.Error, connection_invalidated=lost, dialect=self.dialect
                ) from exc
            except BaseException:  # cancelled mid-statement: the connection's state is unknown
                await self._checkin(conn, discard=True)
                raise
            await self._checkin(conn, discard=generation != self._generation)
            return row

    async def aclose(self) -> None:
        """Close the idle connections (at shutdown, and after a lost one); those in use are closed when
        they come back."""
        self._generation += 1
        idle, self._idle = self._idle, []
        for conn, _ in idle:
            await conn.close()

    @property
    def idle_connections(self) -> int:
        return len(self._idle)

    async def _checkout(self) -> psycopg.AsyncConnection[Any]:
        while self._idle:
            conn, since = self._idle.pop()
            try:
                if time.monotonic() - since < self.ping_after_idle_s or await _alive(conn):
                    return conn
            except BaseException:  # cancelled during the ping: not handed out, not leaked
                conn.pgconn.finish()
                raise
            conn.pgconn.finish()  # dead while idle: replaced, no error for the caller (no I/O to await)
        try:
            return await psycopg.AsyncConnection.connect(self.conninfo, autocommit=True)
        except psycopg.Error as exc:
            raise DBAPIError.instance(
                None, None, exc, psycopg.Error, connection_invalidated=True, dialect=self.dialect
            ) from exc

    async def _checkin(self, conn: psycopg.AsyncConnection[Any], *, discard: bool) -> None:
        if discard or conn.closed or conn.broken:
            await conn.close()
        else:
            self._idle.append((conn, time.monotonic()))

    def _in_this_loop(self) -> None:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            for conn, _ in self._idle:  # opened in a loop that is gone: close the sockets, no I/O
                conn.pgconn.finish()
            self._idle, self._loop, self._slots = [], loop, asyncio.Semaphore(self.size)


async def _alive(conn: psycopg.AsyncConnection[Any]) -> bool:
    try:
        await conn.execute("SELECT 1")
    except psycopg.Error:
        return False
    return True


def driver_pool_for(engine: Engine, *, size: int, ping_after_idle_s: float) -> AsyncDriverPool | None:
    """A pool on ``engine``'s PostgreSQL database; None for SQLite. The connection parameters are the
    ones SQLAlchemy's psycopg dialect gives the driver for the same URL (escaped characters in the
    password, several hosts, ``?host=`` and the other query options alike)."""
    if engine.dialect.name != "postgresql":
        return None
    _, params = engine.dialect.create_connect_args(engine.url)
    options = {k: v for k, v in params.items() if isinstance(v, str | int)}  # not its adapters
    conninfo = make_conninfo("", **options)
    return AsyncDriverPool(conninfo, engine.dialect, size=size, ping_after_idle_s=ping_after_idle_s)
