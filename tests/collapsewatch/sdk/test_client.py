"""The SDK client against a real local HTTP server whose answers each test scripts (no mocks of httpx).

The server is ``http.server`` in a thread: it can answer 503 N times, drop connections, stall past
the client's timeout, or stop listening altogether (connection refused) and come back on the same port.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import platform
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from collapsewatch.sdk import attach, init, start_run
from collapsewatch.sdk.client import (
    ApiError,
    Client,
    NotClaimable,
    ServerUnavailable,
    StaleAttempt,
)

NOW = datetime(2026, 1, 1, tzinfo=UTC).isoformat()
Reply = tuple[int, dict[str, str], bytes]


def run_json(run_id: int = 7) -> dict[str, Any]:
    return {
        "id": run_id, "project": "default", "name": None, "kind": "sdk", "status": "running",
        "attempt": 1, "max_attempts": 1, "config": {}, "tags": [], "sweep_id": None,
        "created_at": NOW, "started_at": NOW, "finished_at": None, "lease_until": None,
        "cancel_requested": False, "error": None, "worker": None, "summary": {}, "last_epoch": None,
    }  # fmt: skip


def default_reply(method: str, path: str, body: Any) -> Reply:
    if method == "POST" and path == "/api/v1/runs":
        return 201, {}, json.dumps(run_json()).encode()
    if method == "GET" and path.startswith("/api/v1/runs/"):
        return 200, {}, json.dumps(run_json(int(path.split("/")[4]))).encode()
    return 200, {}, b"{}"


class ScriptedServer:
    """Records every request; ``plan`` is a list of actions used one per request before the default:
    an HTTP status (int), "drop" (close without answering) or ("stall", seconds)."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, Any, dict[str, str]]] = []
        self.plan: list[Any] = []
        self.reply: Callable[[str, str, Any], Reply] = default_reply
        self.lock = threading.Lock()
        self.port = 0
        self.connections: list[socket.socket] = []
        self._httpd: ThreadingHTTPServer | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def setup(self) -> None:
                super().setup()
                with outer.lock:
                    outer.connections.append(self.connection)

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body: Any = json.loads(raw) if raw else None
                except ValueError:
                    body = raw
                with outer.lock:
                    outer.requests.append((self.command, self.path, body, dict(self.headers)))
                    action = outer.plan.pop(0) if outer.plan else None
                if action == "drop":
                    self.close_connection = True
                    return
                if isinstance(action, tuple) and action[0] == "stall":
                    time.sleep(action[1])
                    action = None
                if isinstance(action, int):
                    status, headers, payload = (
                        action,
                        {},
                        json.dumps({"detail": f"scripted {action}"}).encode(),
                    )
                else:
                    status, headers, payload = outer.reply(self.command, self.path, body)
                self.send_response(status)
                for key, value in ({"Content-Type": "application/json"} | headers).items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PUT = _handle

        ThreadingHTTPServer.allow_reuse_address = True
        self._httpd = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        threading.Thread(target=self._httpd.serve_forever, args=(0.05,), daemon=True).start()

    def stop(self) -> None:
        """Stop listening and drop open connections: requests fail until :meth:`start`."""
        assert self._httpd is not None
        self._httpd.shutdown()
        self._httpd.server_close()
        self._httpd = None
        with self.lock:
            for conn in self.connections:
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)
            self.connections.clear()

    def bodies(self, method: str, suffix: str) -> list[Any]:
        with self.lock:
            return [b for m, p, b, _ in self.requests if m == method and p.split("?")[0].endswith(suffix)]


@pytest.fixture
def server() -> Iterator[ScriptedServer]:
    srv = ScriptedServer()
    yield srv
    if srv._httpd is not None:
        srv.stop()


def make_client(server: ScriptedServer, tmp_path: Path, **options: Any) -> Client:
    defaults: dict[str, Any] = {
        "timeout": 2.0, "spool_dir": tmp_path / "spool", "max_retries": 3, "backoff": 0.01,
        "backoff_max": 0.05, "flush_interval": 0.05, "finish_timeout": 10.0,
    }  # fmt: skip
    return Client(server.url, "secret-token", **(defaults | options))


# -- the transport -------------------------------------------------------------------------------


def test_request_retries_503_then_returns_the_answer(server: ScriptedServer, tmp_path: Path) -> None:
    server.plan = [503, 503]
    with make_client(server, tmp_path) as client:
        run = client.get_run(7)
    assert run.id == 7
    assert len(server.requests) == 3


@pytest.mark.parametrize("failure", ["drop", 429, 408, 500, ("stall", 2.5)])
def test_request_retries_transient_failures(server: ScriptedServer, tmp_path: Path, failure: Any) -> None:
    server.plan = [failure]
    with make_client(server, tmp_path, timeout=1.0) as client:
        assert client.get_run(7).id == 7
    assert len(server.requests) == 2


def test_request_gives_up_after_max_retries(server: ScriptedServer, tmp_path: Path) -> None:
    server.plan = [503] * 10
    with make_client(server, tmp_path, max_retries=2) as client, pytest.raises(ServerUnavailable) as info:
        client.get_run(7)
    assert len(server.requests) == 3
    assert "503" in str(info.value)


def test_request_raises_at_once_for_a_client_error_with_the_server_message(
    server: ScriptedServer, tmp_path: Path
) -> None:
    message = "metrics.loss: must be a finite number (got 'NaN')"
    server.reply = lambda m, p, b: (422, {}, json.dumps({"detail": [], "message": message}).encode())
    with make_client(server, tmp_path) as client, pytest.raises(ApiError) as info:
        client.get_run(7)
    assert info.value.status_code == 422
    assert info.value.message == message
    assert len(server.requests) == 1


def test_request_to_a_url_that_is_not_the_server_root_says_what_the_url_must_be(
    server: ScriptedServer, tmp_path: Path
) -> None:
    server.reply = lambda m, p, b: (
        404,
        {},
        json.dumps({"detail": "Not Found", "message": "Not Found"}).encode(),
    )
    with make_client(server, tmp_path) as client, pytest.raises(ApiError, match="server's root") as info:
        client.get_run(7)
    assert info.value.status_code == 404
    server.reply = lambda m, p, b: (404, {}, json.dumps({"detail": "run 7 does not exist"}).encode())
    with make_client(server, tmp_path) as client, pytest.raises(ApiError) as missing:
        client.get_run(7)
    assert missing.value.message == "run 7 does not exist"  # a missing run is not a wrong URL


def test_request_joins_fastapi_validation_details_into_the_message(
    server: ScriptedServer, tmp_path: Path
) -> None:
    detail = [{"loc": ["body", "points", 0, "step"], "msg": "must be >= 0"}]
    server.reply = lambda m, p, b: (422, {}, json.dumps({"detail": detail}).encode())
    with (
        make_client(server, tmp_path) as client,
        pytest.raises(ApiError, match=r"points\.0\.step: must be >= 0"),
    ):
        client.get_run(7)


def test_request_sends_the_bearer_token(server: ScriptedServer, tmp_path: Path) -> None:
    with make_client(server, tmp_path) as client:
        client.get_run(7)
    assert server.requests[0][3]["Authorization"] == "Bearer secret-token"


def test_claim_conflict_raises_not_claimable(server: ScriptedServer, tmp_path: Path) -> None:
    server.plan = [409]
    with make_client(server, tmp_path) as client, pytest.raises(NotClaimable):
        client.claim(7, {"host": "gpu-1"})
    assert server.requests[0][2] == {"worker": {"host": "gpu-1"} | dict.fromkeys(
        ["device", "device_name", "torch", "cuda", "pid"])}  # fmt: skip


def test_heartbeat_conflict_raises_stale_attempt(server: ScriptedServer, tmp_path: Path) -> None:
    server.plan = [409]
    with make_client(server, tmp_path) as client, pytest.raises(StaleAttempt):
        client.heartbeat(7, attempt=1)
    assert len(server.requests) == 1


def test_checkpoint_round_trip_uses_raw_bytes_and_the_epoch_header(
    server: ScriptedServer, tmp_path: Path
) -> None:
    stored: dict[str, Any] = {}

    def reply(method: str, path: str, body: Any) -> Reply:
        if method == "PUT":
            stored["path"], stored["body"] = path, body
            return 201, {}, b"{}"
        if "body" not in stored:
            return 404, {}, b'{"detail": "run 7 has no checkpoint yet"}'
        return 200, {"X-Checkpoint-Epoch": "3", "Content-Type": "application/octet-stream"}, stored["body"]

    server.reply = reply
    with make_client(server, tmp_path) as client:
        assert client.download_checkpoint(7) is None
        client.upload_checkpoint(7, attempt=2, epoch=3, data=b"\x00\x01state")
        assert client.download_checkpoint(7) == (3, b"\x00\x01state")
    assert stored["path"] == "/api/v1/runs/7/checkpoint?attempt=2&epoch=3"


def test_client_rejects_a_missing_token_with_what_to_do(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("COLLAPSEWATCH_TOKEN", raising=False)
    with pytest.raises(ValueError, match="collapsewatch token create"):
        Client.from_env()


def test_from_env_reads_url_and_token(monkeypatch: pytest.MonkeyPatch, server: ScriptedServer) -> None:
    monkeypatch.setenv("COLLAPSEWATCH_URL", server.url)
    monkeypatch.setenv("COLLAPSEWATCH_TOKEN", "env-token")
    with Client.from_env() as client:
        client.get_run(7)
    assert server.requests[0][3]["Authorization"] == "Bearer env-token"


# -- the Run -------------------------------------------------------------------------------------


def test_log_sends_every_point_once_in_batches_of_at_most_1000(
    server: ScriptedServer, tmp_path: Path
) -> None:
    with make_client(server, tmp_path, flush_interval=60) as client:
        run = start_run(client, "default", {"lr": 0.1})
        for step in range(1250):
            run.log({"loss": step / 10, "acc": 1 - step / 2000}, step=step)
        assert run.finish()
    batches = server.bodies("POST", "/metrics")
    assert all(0 < len(b["points"]) <= 1000 for b in batches)
    points = [(p["key"], p["step"], p["value"]) for b in batches for p in b["points"]]
    assert sorted(points) == sorted([("loss", s, s / 10) for s in range(1250)] + [
        ("acc", s, 1 - s / 2000) for s in range(1250)])  # fmt: skip
    assert server.bodies("POST", "/finish") == [{"attempt": 1, "status": "succeeded", "error": None}]


def test_log_flushes_buffered_points_on_the_interval(server: ScriptedServer, tmp_path: Path) -> None:
    with make_client(server, tmp_path, flush_interval=0.05) as client:
        run = start_run(client)
        run.log({"loss": 1.0})
        deadline = time.monotonic() + 10
        while not server.bodies("POST", "/metrics") and time.monotonic() < deadline:
            time.sleep(0.02)
        assert server.bodies("POST", "/metrics")[0]["points"] == [{"key": "loss", "step": 0, "value": 1.0}]
        run.finish()


def test_log_drops_non_finite_scalars_with_one_warning(
    server: ScriptedServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with make_client(server, tmp_path) as client, caplog.at_level(logging.WARNING, "collapsewatch.sdk"):
        run = start_run(client)
        run.log({"loss": math.nan, "acc": 0.5}, step=0)
        run.log({"loss": math.inf}, step=1)
        run.log({"loss": 2.0}, step=2)
        run.finish()
    points = [p for b in server.bodies("POST", "/metrics") for p in b["points"]]
    assert sorted((p["key"], p["step"]) for p in points) == [("acc", 0), ("loss", 2)]
    assert len([r for r in caplog.records if "only finite" in r.getMessage()]) == 1


def test_log_without_step_counts_up_from_the_largest_step(server: ScriptedServer, tmp_path: Path) -> None:
    with make_client(server, tmp_path) as client:
        run = start_run(client)
        run.log({"a": 1.0})
        run.log({"a": 2.0}, step=10)
        run.log({"a": 3.0})
        run.finish()
    points = [p for b in server.bodies("POST", "/metrics") for p in b["points"]]
    assert sorted(p["step"] for p in points) == [0, 10, 11]


def test_log_rejects_a_bad_key_naming_it(server: ScriptedServer, tmp_path: Path) -> None:
    with make_client(server, tmp_path) as client:
        run = start_run(client)
        with pytest.raises(ValueError, match="'bad key!'"):
            run.log({"bad key!": 1.0})
        run.finish()


def test_log_epoch_sends_non_finite_metrics_as_null(server: ScriptedServer, tmp_path: Path) -> None:
    with make_client(server, tmp_path) as client:
        run = start_run(client)
        run.log_epoch(1, {"train_loss": math.nan, "val_acc": 0.75, "lr": math.inf})
        run.finish()
    assert server.bodies("PUT", "/epochs/1") == [
        {"attempt": 1, "metrics": {"train_loss": None, "val_acc": 0.75, "lr": None}, "stats": None}
    ]


def test_context_manager_finishes_failed_with_the_exception_text(
    server: ScriptedServer, tmp_path: Path
) -> None:
    with make_client(server, tmp_path) as client:
        with pytest.raises(RuntimeError), start_run(client) as run:
            run.log({"loss": 1.0})
            raise RuntimeError("diverged at epoch 3")
        assert run.finished
    (body,) = server.bodies("POST", "/finish")
    assert body["status"] == "failed"
    assert "RuntimeError: diverged at epoch 3" in body["error"]


def test_finish_comes_after_every_write(server: ScriptedServer, tmp_path: Path) -> None:
    with make_client(server, tmp_path) as client:
        run = start_run(client)
        for epoch in range(5):
            run.log_epoch(epoch, {"val_acc": 0.1 * epoch})
            run.log({"loss": 1.0}, step=epoch)
        run.finish()
    paths = [p for m, p, _, _ in server.requests if m != "GET"]
    assert paths[-1] == "/api/v1/runs/7/finish"
    assert len(paths) == 1 + 5 + 1 + 1  # create, 5 epochs, one metrics batch, finish


def test_stale_attempt_is_raised_by_the_next_call(server: ScriptedServer, tmp_path: Path) -> None:
    with make_client(server, tmp_path) as client:
        run = attach(client, 7, attempt=1)
        server.plan = [409]
        run.log_epoch(1, {"val_acc": 0.5})
        run.flush(timeout=10)
        with pytest.raises(StaleAttempt):
            run.log_epoch(2, {"val_acc": 0.6})
        with pytest.raises(StaleAttempt):
            run.finish()


def test_writes_during_an_outage_are_spooled_then_delivered_once(
    server: ScriptedServer, tmp_path: Path
) -> None:
    with make_client(server, tmp_path) as client:
        run = start_run(client)
        run.log_epoch(0, {"val_acc": 0.0})
        assert run.flush(timeout=10)
        server.stop()
        for epoch in range(1, 6):
            run.log_epoch(epoch, {"val_acc": epoch / 10})
            run.log({"loss": 1 / epoch}, step=epoch)
        assert not run.flush(timeout=0.2)
        assert list((client.spool_dir).glob("run-7.*.jsonl"))
        server.start()
        assert run.finish()
    epochs = [p for m, p, _, _ in server.requests if m == "PUT"]
    assert epochs == [f"/api/v1/runs/7/epochs/{e}" for e in range(6)]  # once each, in order
    points = [(p["key"], p["step"]) for b in server.bodies("POST", "/metrics") for p in b["points"]]
    assert sorted(points) == [("loss", s) for s in range(1, 6)]
    assert not list(client.spool_dir.glob("*.jsonl"))


def test_finish_leaves_the_spool_when_the_server_stays_down_and_flush_spool_resends_it(
    server: ScriptedServer, tmp_path: Path
) -> None:
    with make_client(server, tmp_path) as client:
        run = start_run(client)
        server.stop()
        run.log_epoch(1, {"val_acc": 0.5})
        run.log({"loss": 0.25}, step=1)
        assert run.finish(timeout=0.3) is False
        assert len(list(client.spool_dir.glob("run-7.*.jsonl"))) == 1
    server.start()
    with make_client(server, tmp_path) as fresh:
        assert fresh.flush_spool() == (3, 0)  # the epoch, the scalar batch, the finish
        assert not list(fresh.spool_dir.glob("*.jsonl"))
    assert [f"{m} {p}" for m, p, _, _ in server.requests[1:]] == [
        "PUT /api/v1/runs/7/epochs/1",
        "POST /api/v1/runs/7/metrics",
        "POST /api/v1/runs/7/finish",
    ]


def test_start_run_resends_leftovers_in_the_background(server: ScriptedServer, tmp_path: Path) -> None:
    with make_client(server, tmp_path) as client:
        run = attach(client, 5, attempt=1)
        server.stop()
        run.log_epoch(1, {"val_acc": 0.5})
        assert run.finish(timeout=0.2) is False
    server.start()
    with make_client(server, tmp_path) as client:
        fresh = start_run(client)
        deadline = time.monotonic() + 10
        while list(client.spool_dir.glob("run-5.*.jsonl")) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert fresh.finish()
    assert server.bodies("PUT", "/runs/5/epochs/1") == [
        {"attempt": 1, "metrics": {"val_acc": 0.5}, "stats": None}
    ]
    assert server.bodies("POST", "/runs/5/finish") == [{"attempt": 1, "status": "succeeded", "error": None}]


def test_init_reads_the_environment_and_owns_its_client(
    server: ScriptedServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLLAPSEWATCH_URL", server.url)
    monkeypatch.setenv("COLLAPSEWATCH_TOKEN", "env-token")
    monkeypatch.setenv("COLLAPSEWATCH_SPOOL_DIR", str(tmp_path / "spool"))
    run = init(project="demo", config={"lr": math.nan, "layers": (2, 3)}, name="first")
    assert run.owns_client
    assert run.finish()
    (body,) = server.bodies("POST", "/api/v1/runs")
    sent = {key: body[key] for key in ("project", "name", "config", "tags")}
    assert sent == {"project": "demo", "name": "first", "config": {"lr": None, "layers": [2, 3]}, "tags": []}
    assert len(body["client_id"]) == 32 and body["provenance"]["python"] == platform.python_version()


def test_log_embeddings_accepts_numpy_and_sends_the_collapse_statistics(
    server: ScriptedServer, tmp_path: Path
) -> None:
    np = pytest.importorskip("numpy")
    from collapsewatch.stats import collapse_stats

    embeddings = np.random.default_rng(0).normal(size=(32, 8))
    with make_client(server, tmp_path) as client:
        run = start_run(client)
        stats = run.log_embeddings(embeddings, 2, {"train_loss": 0.5})
        run.finish()
    (body,) = server.bodies("PUT", "/epochs/2")
    assert stats is not None
    assert body["stats"] == stats == collapse_stats(embeddings)
    assert body["metrics"] == {"train_loss": 0.5}


def test_log_embeddings_with_nan_logs_the_epoch_without_statistics(
    server: ScriptedServer, tmp_path: Path
) -> None:
    np = pytest.importorskip("numpy")
    embeddings = np.ones((4, 3))
    embeddings[1, 2] = np.nan
    with make_client(server, tmp_path) as client:
        run = start_run(client)
        assert run.log_embeddings(embeddings, 1, {"train_loss": np.float32(1.5)}) is None
        run.finish()
    assert server.bodies("PUT", "/epochs/1") == [
        {"attempt": 1, "metrics": {"train_loss": 1.5}, "stats": None}
    ]


def test_an_unauthorized_token_is_raised_by_the_next_call(server: ScriptedServer, tmp_path: Path) -> None:
    with make_client(server, tmp_path) as client:
        run = attach(client, 7, attempt=1)
        server.plan = [401]
        run.log_epoch(1)
        run.flush(timeout=10)
        with pytest.raises(ApiError) as info:
            run.log({"loss": 1.0})
        assert info.value.status_code == 401
        with pytest.raises(ApiError):
            run.finish()


CRASHING_SCRIPT = """
import os, signal, sys
from collapsewatch.sdk import Client, attach

client = Client(sys.argv[1], "t", spool_dir=sys.argv[2], max_retries=0, backoff=0.01, backoff_max=0.05)
run = attach(client, 9, attempt=1)
for epoch in range(1, 4):
    run.log_epoch(epoch, {"val_acc": epoch / 10})
run.log({"loss": 0.5}, step=3)
run.flush(timeout=1.0)  # the server is down: everything is in the spool now
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_writes_spooled_by_a_killed_process_are_recovered(server: ScriptedServer, tmp_path: Path) -> None:
    url = server.url
    server.stop()
    spool = tmp_path / "spool"
    child = subprocess.run([sys.executable, "-c", CRASHING_SCRIPT, url, str(spool)], timeout=120, check=False)
    assert child.returncode == -signal.SIGKILL
    server.start()
    with make_client(server, tmp_path) as client:
        assert client.flush_spool() == (4, 0)
    assert [p for m, p, _, _ in server.requests] == [
        "/api/v1/runs/9/epochs/1",
        "/api/v1/runs/9/epochs/2",
        "/api/v1/runs/9/epochs/3",
        "/api/v1/runs/9/metrics",
    ]


def test_log_accepts_numpy_integers_as_steps_and_rejects_negative_ones(
    server: ScriptedServer, tmp_path: Path
) -> None:
    np = pytest.importorskip("numpy")
    with make_client(server, tmp_path) as client:
        run = start_run(client)
        run.log({"loss": np.float64(0.5)}, step=np.int64(4))
        run.log_epoch(np.int32(2), {"val_acc": 0.5})
        with pytest.raises(ValueError, match="step: -1 must be an integer"):
            run.log({"loss": 1.0}, step=-1)
        with pytest.raises(ValueError, match=r"epoch: 1\.5 must be an integer"):
            run.log_epoch(1.5)  # type: ignore[arg-type]
        run.finish()
    assert server.bodies("POST", "/metrics") == [
        {"attempt": 1, "points": [{"key": "loss", "step": 4, "value": 0.5}]}
    ]
    assert len(server.bodies("PUT", "/epochs/2")) == 1
