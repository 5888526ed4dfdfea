"""The server's resident memory under a long mixed load: glibc malloc set for a many-threaded server.

uvicorn runs the sync routes on anyio's thread pool (up to 40 threads). glibc gives each new thread
that allocates an arena of its own, up to 8 x cores of them, and hands an arena's freed pages back to
the OS only when they sit at its top: under ``bench/soak.py`` the server's RSS climbed for ten
minutes (+22-24 % over 30) while the live Python objects stayed flat. Two things keep it flat:

- :func:`limit_arenas`: at most ``MALLOC_ARENA_MAX`` arenas (the same knob glibc reads from the
  environment at start-up; set here at run time, before the thread pool exists);
- :func:`trim`: ``malloc_trim(0)``, which returns the free whole pages of every arena, run every
  ``MEMORY_TRIM_SECONDS`` by :func:`trim_forever` (started in the app's lifespan).

Both are no-ops returning ``False`` where the C library is not glibc (macOS, musl).

Python's own collector is the other source of stalls: a full (generation 2) collection walks every
tracked object, and the server holds some 180,000 of them after start-up (modules, routes, pydantic
and SQLAlchemy structures), so each one held the GIL for 80-200 ms and every request in flight
waited (the p99 of ``bench.load``). :func:`freeze_startup_objects`, called once the app is up,
moves them to the permanent generation: later collections walk only what was created since.
"""

from __future__ import annotations

import asyncio
import ctypes
import gc
import logging
import sys
from functools import lru_cache

import anyio

log = logging.getLogger(__name__)

M_ARENA_MAX = -8  # glibc's mallopt() parameter number (malloc.h)


@lru_cache(maxsize=1)
def _glibc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return None
    if not hasattr(libc, "gnu_get_libc_version") or not hasattr(libc, "malloc_trim"):
        return None  # musl and others: no arenas to tune
    return libc


def limit_arenas(count: int) -> bool:
    """Cap glibc's malloc arenas at ``count`` (0: leave glibc's default). True if it was applied."""
    libc = _glibc()
    if count <= 0 or libc is None:
        return False
    return bool(libc.mallopt(ctypes.c_int(M_ARENA_MAX), ctypes.c_int(count)))


def trim() -> bool:
    """Give the free pages of every malloc arena back to the OS. True if any memory was released."""
    libc = _glibc()
    if libc is None:
        return False
    return bool(libc.malloc_trim(ctypes.c_size_t(0)))


def freeze_startup_objects() -> int:
    """Collect once, then exempt every object alive now from later collections (they live as long
    as the process anyway). Only the first call in a process freezes (later apps in the same
    process, as in the tests, would freeze objects that do not live that long). Returns how many
    objects are frozen."""
    if not gc.get_freeze_count():
        gc.collect()
        gc.freeze()
    return gc.get_freeze_count()


async def trim_forever(every_s: float) -> None:
    """:func:`trim` every ``every_s`` seconds, off the event loop, until cancelled."""
    while True:
        await asyncio.sleep(every_s)
        try:
            await anyio.to_thread.run_sync(trim)
        except Exception:  # never let a failed trim take the server down
            log.exception("malloc_trim failed; trying again in %.0f s", every_s)
