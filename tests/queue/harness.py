"""Real processes for the queue tests: a uvicorn server, Celery workers and (optionally) Redis.

Everything runs on 127.0.0.1 with free ports, a SQLite file database and files under ``tmp_path``;
short leases and intervals come from the settings classes' environment variables.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx

T = TypeVar("T")
REPO = Path(__file__).resolve().parents[2]
TINY_SPEC: dict[str, Any] = {
    "dataset": "digits", "model": "mlp", "embedding_dim": 16, "epochs": 3, "probe_size": 64,
    "batch_size": 256, "device": "cpu", "seed": 0,
}  # fmt: skip
# Epochs long enough (~0.3 s each on one core) to act between them: cancel, kill.
SLOW_SPEC: dict[str, Any] = TINY_SPEC | {"batch_size": 4, "lr": 0.005, "epochs": 10}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(predicate: Callable[[], T | None], *, timeout: float, what: str, every: float = 0.2) -> T:
    """Poll ``predicate`` until it returns something truthy; fail the test after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what} (last: {last!r})")


def kill_group(proc: subprocess.Popen[bytes], sig: int = signal.SIGKILL) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)


def stop(proc: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    if proc.poll() is None:
        kill_group(proc, signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            kill_group(proc, signal.SIGKILL)
            proc.wait(10)
    else:
        kill_group(proc, signal.SIGKILL)  # leftover children of a dead parent


def spawn(argv: list[str], *, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    handle = open(log, "ab")  # noqa: SIM115 - the child owns it
    return subprocess.Popen(
        argv, env=env, cwd=REPO, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True
    )


@dataclass
class RedisServer:
    """A private ``redis-server`` (no persistence) that tests may stop and restart."""

    root: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        argv = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                "--appendonly", "no", "--dir", str(self.root)]  # fmt: skip
        self.proc = spawn(argv, env=dict(os.environ), log=self.root / "redis.log")
        import redis

        client = redis.Redis.from_url(self.url, socket_connect_timeout=1)
        wait_for(lambda: _ping(client), timeout=20, what="redis-server")

    def kill(self) -> None:
        if self.proc is not None:
            kill_group(self.proc, signal.SIGKILL)
            self.proc.wait(10)
            self.proc = None


def _ping(client: Any) -> bool:
    try:
        return bool(client.ping())
    except Exception:
        return False


class Stack:
    """A server on a SQLite file + any number of workers, sharing one broker and queue prefix."""

    def __init__(self, root: Path, *, broker_url: str | None = None, **settings: Any) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.broker_url = broker_url or f"sqla+sqlite:///{root / 'broker.db'}"
        values = {
            "DATABASE_URL": f"sqlite:///{root / 'cw.db'}",
            "BROKER_URL": self.broker_url,
            "ARTIFACT_DIR": str(root / "artifacts"),
            "QUEUE_PREFIX": f"t{uuid.uuid4().hex[:10]}-",
            "LEASE_SECONDS": "6",
            "MAX_ATTEMPTS": "3",
            "MAINTENANCE_INTERVAL_SECONDS": "0.5",
            "SWEEP_AFTER_SECONDS": "4",
            "HEARTBEAT_SECONDS": "1",
            "REDIS_URL": "",
            "OMP_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1",
            "PYTHONUNBUFFERED": "1",
        } | {k.upper(): str(v) for k, v in settings.items()}
        self.env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"} | values
        if not self.env["REDIS_URL"]:
            del self.env["REDIS_URL"]
        self.user_token = self.cli("token", "create")
        self.worker_token = self.cli("token", "create", "--worker")
        self.server: subprocess.Popen[bytes] | None = None
        self.workers: list[subprocess.Popen[bytes]] = []
        self.http = httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {self.user_token}"}, timeout=30
        )
        self.worker_http = httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {self.worker_token}"}, timeout=30
        )

    # -- processes -------------------------------------------------------------------------------

    def cli(self, *args: str) -> str:
        out = subprocess.run(
            [sys.executable, "-m", "collapsewatch.cli", *args], env=self.env, cwd=REPO, capture_output=True,
            text=True, timeout=120, check=True,
        )  # fmt: skip
        return out.stdout.strip()

    def start_server(self) -> None:
        argv = [
            sys.executable,
            "-m",
            "uvicorn",
            "app.main:app",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
        ]
        self.server = spawn(argv, env=self.env, log=self.root / "server.log")
        wait_for(self._healthy, timeout=60, what=f"the server at {self.url}")

    def _healthy(self) -> bool:
        assert self.server is not None
        if self.server.poll() is not None:
            raise AssertionError(f"server exited: {(self.root / 'server.log').read_text()[-3000:]}")
        try:
            return httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def start_worker(self, *extra: str, name: str | None = None) -> subprocess.Popen[bytes]:
        index = len(self.workers)
        log = self.root / f"worker{index}.log"
        env = self.env | {"WORKER_TOKEN": self.worker_token, "SERVER_URL": self.url}
        argv = [
            sys.executable,
            "-m",
            "collapsewatch.cli",
            "worker",
            "--gpus",
            "none",
            "--name",
            name or f"w{index}@test",
            *extra,
        ]
        proc = spawn(argv, env=env, log=log)
        self.workers.append(proc)
        wait_for(lambda: self._ready(proc, log), timeout=90, what=f"worker {index} to be ready")
        return proc

    @staticmethod
    def _ready(proc: subprocess.Popen[bytes], log: Path) -> bool:
        text = log.read_text(errors="replace") if log.exists() else ""
        if proc.poll() is not None:
            raise AssertionError(f"worker exited ({proc.returncode}): {text[-3000:]}")
        return " ready." in text

    def close(self) -> None:
        for proc in self.workers:  # no warm shutdown needed: every test waited for its runs
            kill_group(proc, signal.SIGKILL)
            proc.wait(10)
        if self.server is not None:
            stop(self.server)
        self.http.close()
        self.worker_http.close()

    def logs(self) -> str:
        parts = []
        for path in sorted(self.root.glob("*.log")):
            parts.append(f"===== {path.name}\n{path.read_text(errors='replace')[-4000:]}")
        return "\n".join(parts)

    # -- API -------------------------------------------------------------------------------------

    def submit(self, spec: dict[str, Any] | None = None, **body: Any) -> list[dict[str, Any]]:
        response = self.http.post("/api/v1/jobs", json={"spec": TINY_SPEC | (spec or {}), **body})
        assert response.status_code == 201, response.text
        runs: list[dict[str, Any]] = response.json()
        return runs

    def run(self, run_id: int) -> dict[str, Any]:
        response = self.http.get(f"/api/v1/runs/{run_id}")
        assert response.status_code == 200, response.text
        data: dict[str, Any] = response.json()
        return data

    def epochs(self, run_id: int) -> list[dict[str, Any]]:
        response = self.http.get(f"/api/v1/runs/{run_id}/epochs")
        assert response.status_code == 200, response.text
        data: list[dict[str, Any]] = response.json()
        return data

    def log_lines(self, run_id: int) -> list[str]:
        response = self.http.get(f"/api/v1/runs/{run_id}/logs")
        assert response.status_code == 200, response.text
        return [item["line"] for item in response.json()]

    def wait_status(self, run_id: int, statuses: set[str], timeout: float = 120) -> dict[str, Any]:
        def check() -> dict[str, Any] | None:
            run = self.run(run_id)
            return run if run["status"] in statuses else None

        try:
            return wait_for(check, timeout=timeout, what=f"run {run_id} to be {sorted(statuses)}", every=0.3)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self.logs()}") from None

    def wait_epoch(self, run_id: int, epoch: int, timeout: float = 120) -> dict[str, Any]:
        def check() -> dict[str, Any] | None:
            run = self.run(run_id)
            return run if (run["last_epoch"] or 0) >= epoch else None

        return wait_for(check, timeout=timeout, what=f"run {run_id} to reach epoch {epoch}", every=0.1)


def assert_invariants(stack: Stack, run: dict[str, Any], *, final: str = "succeeded") -> list[dict[str, Any]]:
    """No run lost (it ended as expected), one record per epoch 1..last, attempts within the limit,
    and a write from an attempt older than the current one is refused."""
    assert run["status"] == final, run
    assert 1 <= run["attempt"] <= run["max_attempts"], run
    epochs = stack.epochs(run["id"])
    numbers = [e["epoch"] for e in epochs]
    assert numbers == sorted(set(numbers)), f"duplicate or unordered epochs: {numbers}"
    if final == "succeeded":
        assert numbers == list(range(1, run["config"]["epochs"] + 1)), numbers
    assert all(e["attempt"] <= run["attempt"] for e in epochs)
    stale = stack.worker_http.put(
        f"/api/v1/runs/{run['id']}/epochs/1", json={"attempt": max(1, run["attempt"] - 1), "metrics": {}}
    )
    assert stale.status_code == 409, stale.text
    return epochs


def comparable(epoch: dict[str, Any]) -> dict[str, Any]:
    """An epoch record without what legitimately differs between runs (timing, attempt, time)."""
    metrics = {k: v for k, v in epoch["metrics"].items() if not k.endswith("seconds")}
    return {"epoch": epoch["epoch"], "metrics": metrics, "stats": epoch["stats"]}
