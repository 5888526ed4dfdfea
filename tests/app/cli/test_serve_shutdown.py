"""`collapsewatch serve` stops on SIGTERM even while an SSE stream is open (graceful-shutdown timeout)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from app.jobs.embedded import GRACEFUL_SHUTDOWN_S

ROOT = Path(__file__).resolve().parents[3]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _cli(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "collapsewatch.cli", *args], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def _wait_up(url: str, proc: subprocess.Popen[bytes]) -> None:
    for _ in range(300):
        assert proc.poll() is None, "the server exited while starting"
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.1)
    raise AssertionError("the server did not come up")


def test_serve_when_sse_stream_open_exits_after_sigterm(tmp_path: Path) -> None:
    env = os.environ | {
        "COLLAPSEWATCH_DATABASE_URL": f"sqlite:///{tmp_path / 'cw.db'}",
        "COLLAPSEWATCH_ARTIFACT_DIR": str(tmp_path / "artifacts"),
        "PYTHONPATH": str(ROOT),
    }
    _cli(env, "db", "upgrade")
    token = _cli(env, "token", "create")
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "collapsewatch.cli", "serve", "--port", str(port)],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_up(f"http://127.0.0.1:{port}", proc)
        with socket.create_connection(("127.0.0.1", port), timeout=30) as stream:
            request = f"GET /api/v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\r\n"
            stream.sendall(request.encode())
            assert stream.recv(64).startswith(b"HTTP/1.1 200")  # the stream is open and stays open
            proc.send_signal(signal.SIGTERM)
            # without the graceful-shutdown timeout uvicorn waits for the stream forever
            assert proc.wait(timeout=GRACEFUL_SHUTDOWN_S + 60) is not None
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
