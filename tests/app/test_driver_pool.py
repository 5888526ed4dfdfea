"""The event loop's own PostgreSQL connections (``app.driver_pool``): bounded, reused most recent
first, pinged after sitting idle, a lost one answered as SQLAlchemy's disconnect error and replaced,
a failed statement leaves its connection usable, a new event loop starts afresh."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import psycopg
import pytest
from sqlalchemy import create_engine, make_url, text
from sqlalchemy.exc import DBAPIError

from app.db import Database
from app.driver_pool import AsyncDriverPool, PoolBusy, driver_pool_for
from app.settings import Settings

pytestmark = [pytest.mark.postgres, pytest.mark.parametrize("database_url", ["postgres"], indirect=True)]
PID = "SELECT pg_backend_pid()"


def _pool(settings: Settings, *, size: int = 2, ping_after_idle_s: float = 60.0) -> AsyncDriverPool:
    db = Database(settings)
    try:
        pool = driver_pool_for(db.engine, size=size, ping_after_idle_s=ping_after_idle_s)
    finally:
        db.dispose()
    assert pool is not None
    return pool


def _terminate(settings: Settings, pid: int) -> None:
    url = settings.database_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SELECT pg_terminate_backend(%s)", (pid,))
    time.sleep(0.2)


async def _pid(pool: AsyncDriverPool) -> int:
    row = await pool.first_row(PID, {})
    assert row is not None
    return int(row[0])


def test_driver_pool_opens_at_most_size_connections_refuses_more_at_once_and_reuses_them(
    settings: Settings,
) -> None:
    pool = _pool(settings, size=2)

    async def main() -> tuple[list[object], int]:
        answers = await asyncio.gather(
            *(pool.first_row("SELECT pg_backend_pid(), pg_sleep(0.2)", {}) for _ in range(6)),
            return_exceptions=True,
        )
        again = await _pid(pool)
        await pool.aclose()
        return answers, again

    started = time.monotonic()
    answers, again = asyncio.run(main())
    rows = [a for a in answers if isinstance(a, tuple)]
    assert len(rows) == 2 and all(isinstance(a, PoolBusy) for a in answers if a not in rows)
    assert time.monotonic() - started < 1.0  # the other four were refused at once, not queued
    assert again in {int(row[0]) for row in rows}
    assert pool.idle_connections == 0  # closed


def test_driver_pool_answers_a_lost_connection_as_a_disconnect_then_recovers(settings: Settings) -> None:
    pool = _pool(settings, size=1)

    async def main() -> None:
        first = await _pid(pool)
        _terminate(settings, first)
        with pytest.raises(DBAPIError) as lost:
            await _pid(pool)
        assert lost.value.connection_invalidated
        assert await _pid(pool) != first  # a new connection
        await pool.aclose()

    asyncio.run(main())


def test_driver_pool_drops_its_idle_connections_with_a_lost_one(settings: Settings) -> None:
    """After a restart every pooled connection is dead: one 503, not one per pooled connection."""
    pool = _pool(settings, size=3)

    async def main() -> list[str]:
        await asyncio.gather(*(pool.first_row("SELECT pg_sleep(0.05)", {}) for _ in range(3)))
        assert pool.idle_connections == 3
        url = settings.database_url.replace("postgresql+psycopg://", "postgresql://")
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as admin:
            await admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        await asyncio.sleep(0.2)
        seen = []
        for _ in range(4):
            try:
                await _pid(pool)
                seen.append("ok")
            except DBAPIError as exc:
                seen.append("lost" if exc.connection_invalidated else "error")
        await pool.aclose()
        return seen

    assert asyncio.run(main()) == ["lost", "ok", "ok", "ok"]


def test_driver_pool_pings_an_idle_connection_and_replaces_a_dead_one_silently(settings: Settings) -> None:
    pool = _pool(settings, size=1, ping_after_idle_s=0.1)

    async def main() -> None:
        first = await _pid(pool)
        await asyncio.sleep(0.15)
        assert await _pid(pool) == first  # pinged, alive, kept
        _terminate(settings, first)
        await asyncio.sleep(0.15)
        assert await _pid(pool) != first  # no error: the ping found it dead
        await pool.aclose()

    asyncio.run(main())


def test_driver_pool_keeps_a_connection_whose_statement_failed(settings: Settings) -> None:
    pool = _pool(settings, size=1)

    async def main() -> None:
        first = await _pid(pool)
        with pytest.raises(DBAPIError) as failed:
            await pool.first_row("SELECT 1 / %(zero)s", {"zero": 0})
        assert not failed.value.connection_invalidated
        assert "division by zero" in str(failed.value)
        assert await _pid(pool) == first  # autocommit: nothing to roll back, still usable
        await pool.aclose()

    asyncio.run(main())


def test_driver_pool_starts_afresh_in_a_new_event_loop(settings: Settings) -> None:
    pool = _pool(settings, size=1)
    first = asyncio.run(_pid(pool))  # its loop is closed with the connection idle in the pool
    second = asyncio.run(_pid(pool))
    assert second != first
    asyncio.run(pool.aclose())


def test_driver_pool_connects_wherever_the_engine_does(settings: Settings) -> None:
    """The pool's connection parameters are the dialect's for the same URL: a password with an escaped
    space and the ``?host=h:port`` form (both refused by libpq when the URL was rendered back)."""
    url = make_url(settings.database_url)
    variants = [
        url.set(password="pa ss"),  # trust auth: any password; written as pa%20ss in DATABASE_URL
        url.set(host=None, port=None).update_query_dict({"host": f"{url.host}:{url.port or 5432}"}),
    ]
    for variant in variants:
        engine = create_engine(variant)
        try:
            with engine.connect() as conn:
                assert conn.execute(text("SELECT 1")).scalar() == 1
            pool = driver_pool_for(engine, size=1, ping_after_idle_s=60)
            assert pool is not None

            async def main(pool: AsyncDriverPool = pool) -> tuple[Any, ...] | None:
                try:
                    return await pool.first_row("SELECT 1", {})
                finally:
                    await pool.aclose()

            assert asyncio.run(main()) == (1,), variant.render_as_string(hide_password=False)
        finally:
            engine.dispose()


def test_driver_pool_closes_what_comes_back_after_aclose_and_a_connection_cancelled_in_its_ping(
    settings: Settings,
) -> None:
    pool = _pool(settings, size=2, ping_after_idle_s=0)

    async def main() -> None:
        slow = asyncio.create_task(pool.first_row("SELECT pg_sleep(0.3)", {}))
        await asyncio.sleep(0.1)
        await pool.aclose()  # shutdown while a statement is out
        await slow
        assert pool.idle_connections == 0  # closed on its return, not kept
        await _pid(pool)  # one idle connection, pinged at its next use (idle limit 0)
        pinging = asyncio.create_task(_pid(pool))
        await asyncio.sleep(0)  # in the ping
        pinging.cancel()
        with pytest.raises(asyncio.CancelledError):
            await pinging
        assert pool.idle_connections == 0
        assert await _pid(pool) > 0  # the slot came back
        await pool.aclose()

    asyncio.run(main())
