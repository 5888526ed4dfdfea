"""A real `collapsewatch up` (uvicorn + the embedded Celery worker on an SQLite broker) in a
temporary directory, for the browser tests; plus a small API client with a user token."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

START_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 30.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class LiveServer:
    url: str
    token: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def api(self, method: str, path: str, **kwargs: Any) -> Any:
        headers = {"Authorization": f"Bearer {self.token}"}
        response = httpx.request(method, self.url + path, headers=headers, timeout=30.0, **kwargs)
        assert response.status_code < 400, f"{method} {path}: {response.status_code} {response.text}"
        return response.json()

    def count_runs(self) -> int:
        headers = {"Authorization": f"Bearer {self.token}"}
        response = httpx.get(self.url + "/api/v1/runs?limit=1", headers=headers, timeout=30.0)
        return int(response.headers["X-Total-Count"])

    def stop(self) -> None:
        """SIGTERM the server's process group (uvicorn stops its worker), SIGKILL if it lingers."""
        if self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=STOP_TIMEOUT_S)


def start_live_server(workdir: Path, *, worker: bool = True) -> LiveServer:
    """``collapsewatch up`` in ``workdir``; ``worker=False`` serves only (queued jobs stay queued, so
    a test can claim them and write their epochs through the API without any training)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = os.environ | {
        "DATABASE_URL": f"sqlite:///{workdir / 'cw.db'}",
        "BROKER_URL": f"sqla+sqlite:///{workdir / 'broker.db'}",
        "ARTIFACT_DIR": str(workdir / "artifacts"),
        "SECRET_KEY": "browser-test-secret",
        "PUBLIC_URL": url,
        "LOCAL_AUTOLOGIN": "true",
        "LEASE_SECONDS": "30",
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
    }
    env.pop("REDIS_URL", None)
    cli = [sys.executable, "-m", "collapsewatch.cli"]
    token = subprocess.run(
        [*cli, "token", "create"],
        env=env,
        cwd=workdir,
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout.strip()
    log_path = workdir / "server.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [*cli, "up", "--host", "127.0.0.1", "--port", str(port), "--gpus", "none"]
            + ([] if worker else ["--no-worker"]),
            env=env,
            cwd=workdir,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = LiveServer(url, token, process, log_path)
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"collapsewatch up exited ({process.returncode}):\n{log_path.read_text()[-4000:]}"
            )
        try:
            if httpx.get(url + "/healthz", timeout=2.0).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    server.stop()
    raise RuntimeError(
        f"collapsewatch up did not answer within {START_TIMEOUT_S}s:\n{log_path.read_text()[-4000:]}"
    )
