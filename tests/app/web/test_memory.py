"""The server's malloc set-up (app/memory.py): arenas capped before the thread pool, periodic trim."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app import main as app_main
from app.main import create_app
from app.settings import Settings
from app.web import memory

pytestmark = pytest.mark.skipif(memory._glibc() is None, reason="glibc only")

# Eight threads that each allocate at once, then glibc's per-arena report (``Arena N:`` on stderr).
ARENAS_SCRIPT = """
import sys, threading, ctypes
from app.web import memory
if sys.argv[1] != "default":
    assert memory.limit_arenas(int(sys.argv[1]))
barrier = threading.Barrier(8)
def work():
    barrier.wait()
    blocks = [bytearray(4096) for _ in range(200)]
    barrier.wait()
threads = [threading.Thread(target=work) for _ in range(8)]
for t in threads: t.start()
for t in threads: t.join()
ctypes.CDLL("libc.so.6").malloc_stats()
"""

# Frees 40 MiB of small blocks below a live one (so glibc cannot shrink the heap by itself), then trims.
TRIM_SCRIPT = """
from app.web import memory
def rss_kib():
    return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmRSS:"))
blocks = [bytearray(32 * 1024) for _ in range(1280)]
pin = bytearray(32 * 1024)
del blocks
before = rss_kib()
released = memory.trim()
print(released, before - rss_kib())
"""


# An app started twice in one process: the start-up objects are frozen once, at the first start.
FREEZE_SCRIPT = """
import gc, sys, tempfile
from pathlib import Path
from fastapi.testclient import TestClient
from app.main import create_app
from app.settings import Settings
root = Path(tempfile.mkdtemp())
def start():
    settings = Settings(database_url=f"sqlite:///{root / 'f.db'}", artifact_dir=root / "a",
                        broker_url=f"sqla+sqlite:///{root / 'b.db'}", maintenance_interval_seconds=0,
                        secret_key="f", _env_file=None)
    with TestClient(create_app(settings)) as client:
        assert client.get("/healthz").status_code == 200
    return gc.get_freeze_count()
print(gc.get_freeze_count(), start(), start())
"""


def _python(script: str, *args: str) -> subprocess.CompletedProcess[str]:
    repo = Path(__file__).resolve().parents[3]
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(repo)}  # no MALLOC_ARENA_MAX from the caller
    return subprocess.run(
        [sys.executable, "-c", script, *args], cwd=repo, env=env, capture_output=True, text=True, check=True
    )


def _arenas(limit: str) -> int:
    return _python(ARENAS_SCRIPT, limit).stderr.count("Arena ")


def test_limit_arenas_caps_the_arenas_of_new_threads() -> None:
    assert _arenas("default") > 2  # glibc alone: one arena per new thread (up to 8 x cores)
    assert _arenas("2") == 2
    assert _arenas("1") == 1


def test_limit_arenas_zero_leaves_glibc_default() -> None:
    assert memory.limit_arenas(0) is False


def test_trim_gives_freed_pages_back() -> None:
    released, dropped_kib = _python(TRIM_SCRIPT).stdout.split()
    assert released == "True"
    assert int(dropped_kib) > 20 * 1024  # most of the 40 MiB freed below the pinned block


def test_app_start_freezes_the_start_up_objects_once() -> None:
    before, first, second = map(int, _python(FREEZE_SCRIPT).stdout.split())
    assert before == 0
    assert first > 50_000  # modules, routes, models: what full collections no longer walk
    assert second - first < 1_000  # the second app's ~100,000 objects were not frozen


def test_lifespan_caps_arenas_and_trims_periodically(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[object] = []
    monkeypatch.setattr(app_main, "limit_arenas", lambda count: calls.append(("limit", count)))
    monkeypatch.setattr(memory, "trim", lambda: calls.append("trim") or True)
    app = create_app(settings.model_copy(update={"malloc_arena_max": 3, "memory_trim_seconds": 0.05}))
    with TestClient(app):
        deadline = time.monotonic() + 10
        while calls.count("trim") < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
    assert calls[0] == ("limit", 3)
    assert calls.count("trim") >= 2
    stopped = len(calls)
    time.sleep(0.2)
    assert len(calls) == stopped  # the trimmer ends with the app


def test_lifespan_without_trim_interval_never_trims(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    trims: list[str] = []
    monkeypatch.setattr(memory, "trim", lambda: trims.append("trim") or True)
    app = create_app(settings.model_copy(update={"memory_trim_seconds": 0}))
    with TestClient(app):
        time.sleep(0.2)
    assert trims == []
