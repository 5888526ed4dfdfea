"""Running ``collapsewatch`` as a user does (a subprocess, its own environment and working directory),
shared by tests/app/cli and tests/packaging."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TypeVar

import httpx

from app.settings import Settings
from worker.settings import WorkerSettings

ROOT = Path(__file__).resolve().parents[3]
SETTING_FIELDS = sorted({*Settings.model_fields, *WorkerSettings.model_fields})
T = TypeVar("T")


def clean_env(extra: Mapping[str, str] = (), *, pythonpath: str | None = str(ROOT)) -> dict[str, str]:
    """This process's environment without any collapsewatch setting (prefixed or not), plus ``extra``;
    ``PYTHONPATH`` is the checkout (None: unset, for an installed environment)."""
    ours = {name.upper() for name in SETTING_FIELDS}
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("COLLAPSEWATCH_") and key not in ours and key != "PYTHONPATH"
    }
    env |= {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    if pythonpath is not None:
        env["PYTHONPATH"] = pythonpath
    return env | dict(extra)


def run(
    command: Sequence[str],
    *,
    env: Mapping[str, str],
    cwd: Path,
    timeout: float = 180,
    stdin: str | None = None,
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        list(command), env=dict(env), cwd=cwd, capture_output=True, text=True, timeout=timeout, input=stdin
    )


def cli(
    *args: str, env: Mapping[str, str], cwd: Path, python: str = sys.executable, timeout: float = 180
) -> subprocess.CompletedProcess[str]:
    """``python -m collapsewatch.cli ARGS`` (the console script's code path)."""
    return run([python, "-m", "collapsewatch.cli", *args], env=env, cwd=cwd, timeout=timeout)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start(command: Sequence[str], *, env: Mapping[str, str], cwd: Path, log: Path) -> subprocess.Popen[bytes]:
    """A long-running command in its own process group, its output in ``log``."""
    handle = open(log, "ab")  # noqa: SIM115 - the child owns it
    return subprocess.Popen(
        list(command), env=dict(env), cwd=cwd, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True
    )


def wait_healthy(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"exited with {proc.returncode} while starting:\n{log.read_text()[-4000:]}")
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    raise AssertionError(f"{url} did not come up:\n{log.read_text()[-4000:]}")


def stop(proc: subprocess.Popen[bytes], timeout: float = 40) -> int:
    """SIGTERM the process group, then SIGKILL; the exit code."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            return proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pass
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    return proc.wait(10)


def wait_until(predicate: Callable[[], T | None], *, timeout: float, what: str, every: float = 0.5) -> T:
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what} (last: {last!r})")
