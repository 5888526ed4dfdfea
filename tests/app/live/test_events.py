"""SSE streams against a real uvicorn server: live epochs, Last-Event-ID resume, Redis across apps."""

from __future__ import annotations

import asyncio
import json
import queue
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from apikit import STATS
from fastapi import FastAPI

from app.auth.api_tokens import create_token, ensure_admin
from app.db import Database
from app.live import sse
from app.live.pubsub import InProcessBroker, RedisBroker
from app.main import create_app
from app.models import Project, Run
from app.runs.store import record_event
from app.settings import Settings

WAIT_S = 15.0  # a hang guard, not a timing assertion


@dataclass
class Sse:
    id: int | None
    event: str
    data: dict[str, Any]


@dataclass
class Live:
    """A uvicorn server in a thread, plus tokens."""

    app: FastAPI
    server: uvicorn.Server
    thread: threading.Thread
    url: str
    user: dict[str, str] = field(default_factory=dict)
    worker: dict[str, str] = field(default_factory=dict)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(20)

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=WAIT_S)


def start(settings: Settings, *, redis_prefix: str | None = None, keepalive_s: float = 0.3) -> Live:
    app = create_app(settings)
    app.state.enqueue = lambda run_id: None
    if redis_prefix is not None:
        assert settings.redis_url
        app.state.publisher = RedisBroker(settings.redis_url, prefix=redis_prefix)
    app.state.sse_keepalive_s = keepalive_s
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", lifespan="on", timeout_graceful_shutdown=2)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    live = Live(app, server, thread, f"http://127.0.0.1:{port}")
    with app.state.db.transaction() as session:
        admin = ensure_admin(session=session, email=settings.admin_email)
        live.user = {"Authorization": f"Bearer {create_token(session=session, user=admin, name='u').token}"}
        token = create_token(session=session, user=admin, name="w", kind="worker").token
        live.worker = {"Authorization": f"Bearer {token}"}
    return live


class Reader:
    """Reads one SSE response in a thread; events land in a queue, the end of the stream as None."""

    def __init__(self, live: Live, path: str, headers: dict[str, str] | None = None) -> None:
        self.events: queue.Queue[Sse | str | None] = queue.Queue()
        self.status: int | None = None
        self._ready = threading.Event()
        self._stop = threading.Event()
        self._client = live.client()
        self._thread = threading.Thread(target=self._run, args=(path, headers or {}), daemon=True)
        self._thread.start()
        assert self._ready.wait(WAIT_S)

    def _run(self, path: str, headers: dict[str, str]) -> None:
        try:
            with self._client.stream("GET", path, headers=headers, timeout=None) as response:
                self.status = response.status_code
                self._ready.set()
                fields: dict[str, str] = {}
                for line in response.iter_lines():
                    if self._stop.is_set():
                        return
                    if line.startswith(":"):
                        self.events.put(line)
                    elif line:
                        name, _, value = line.partition(":")
                        fields[name] = value.removeprefix(" ")
                    elif "data" in fields:
                        raw_id = fields.get("id")
                        event = Sse(
                            int(raw_id) if raw_id else None, fields["event"], json.loads(fields["data"])
                        )
                        self.events.put(event)
                        fields = {}
                    else:
                        fields = {}
        except httpx.HTTPError:
            pass
        finally:
            self._ready.set()
            self.events.put(None)

    def next(self) -> Sse | None:
        """The next event (None: the server ended the stream); keep-alive comments are skipped."""
        while True:
            item = self.comment_or_event()
            if not isinstance(item, str):
                return item

    def comment_or_event(self) -> Sse | str | None:
        return self.events.get(timeout=WAIT_S)

    def take(self, count: int) -> list[Sse]:
        out = [self.next() for _ in range(count)]
        assert all(e is not None for e in out), out
        return [e for e in out if e is not None]

    def close(self) -> None:
        """Stop reading (noticed at the next line: the servers here send keep-alives often)."""
        self._stop.set()
        self._thread.join(WAIT_S)
        self._client.close()


def _settings(tmp_path: Path, database_url: str, redis_url: str | None = None) -> Settings:
    return Settings(
        database_url=database_url,
        redis_url=redis_url,
        broker_url=f"sqla+sqlite:///{tmp_path / 'broker.db'}",
        artifact_dir=tmp_path / "artifacts",
        secret_key="test-secret",
        _env_file=None,  # type: ignore[call-arg]
    )


@pytest.fixture
def live(tmp_path: Path, database_url: str) -> Iterator[Live]:
    server = start(_settings(tmp_path, database_url))
    yield server
    server.stop()


def _epoch(live: Live, http: httpx.Client, run: int, epoch: int, **extra: Any) -> dict[str, Any]:
    body = {"attempt": 1, "metrics": {"val_acc": epoch / 10}, "stats": STATS} | extra
    response = http.put(f"/api/v1/runs/{run}/epochs/{epoch}", json=body, headers=live.worker)
    assert response.status_code == 200, response.text
    return dict(response.json())


def _new_run(live: Live, http: httpx.Client) -> int:
    response = http.post("/api/v1/runs", json={"project": "p"}, headers=live.user)
    assert response.status_code == 201, response.text
    return int(response.json()["id"])


def test_stream_when_epoch_put_pushes_record_in_order(live: Live) -> None:
    with live.client() as http:
        run = _new_run(live, http)
        reader = Reader(live, f"/api/v1/runs/{run}/events", live.user)
        try:
            snapshot = reader.next()
            assert snapshot is not None and snapshot.event == "status"
            assert snapshot.data["status"] == "running" and snapshot.id is not None
            records, latencies = [], []
            for epoch in range(3):
                sent = time.perf_counter()
                records.append(_epoch(live, http, run, epoch))
                [event] = reader.take(1)
                latencies.append(time.perf_counter() - sent)
                assert event.event == "epoch" and event.data == records[-1]
            print(f"PUT start -> event received: {[f'{s * 1000:.1f} ms' for s in latencies]}")
        finally:
            reader.close()


def test_stream_when_reconnecting_with_last_event_id_gets_exactly_missed_events(live: Live) -> None:
    with live.client() as http:
        run = _new_run(live, http)
        first = Reader(live, f"/api/v1/runs/{run}/events", live.user)
        first.take(1)
        _epoch(live, http, run, 0)
        [seen] = first.take(1)
        first.close()
        missed = [_epoch(live, http, run, e) for e in (1, 2, 3)]
        finish = http.post(
            f"/api/v1/runs/{run}/finish", json={"attempt": 1, "status": "succeeded"}, headers=live.worker
        )
        assert finish.status_code == 200, finish.text
        headers = live.user | {"Last-Event-ID": str(seen.id)}
        again = Reader(live, f"/api/v1/runs/{run}/events", headers)
        events = again.take(4)
        assert [e.data for e in events[:3]] == missed
        assert (events[3].event, events[3].data["status"]) == ("status", "succeeded")
        ids = [e.id or 0 for e in events]
        assert ids == sorted(ids) and ids[0] > (seen.id or 0)
        assert again.next() is None  # the run is finished and everything was sent: the stream ends
        again.close()
        by_query = Reader(live, f"/api/v1/runs/{run}/events?last_event_id={ids[1]}", live.user)
        assert [e.data.get("epoch") for e in by_query.take(2)] == [3, None]
        by_query.close()
        done = http.get(f"/api/v1/runs/{run}/events", headers=live.user | {"Last-Event-ID": str(ids[-1])})
        assert done.status_code == 204


def test_all_runs_stream_when_statuses_change_sends_them_with_run_id(live: Live) -> None:
    with live.client() as http:
        reader = Reader(live, "/api/v1/events", live.user)
        try:
            run = _new_run(live, http)
            _epoch(live, http, run, 0)
            cancel = http.post(f"/api/v1/runs/{run}/cancel", headers=live.user)
            assert cancel.status_code == 200, cancel.text
            events = reader.take(2)
            assert [(e.event, e.data["run_id"]) for e in events] == [("status", run), ("status", run)]
            assert events[0].data["status"] == "running"
        finally:
            reader.close()


def _member(live: Live, http: httpx.Client, email: str) -> tuple[int, dict[str, str]]:
    """A new user, viewer of project "p", and a token of theirs."""
    from app.auth.accounts import create_user

    with live.app.state.db.transaction() as session:
        user = create_user(session=session, email=email, password=None)
        token = create_token(session=session, user=user, name="t").token
        user_id = user.id
    added = http.put("/api/v1/projects/p/members", json={"email": email, "role": "viewer"}, headers=live.user)
    assert added.status_code == 200, added.text
    return user_id, {"Authorization": f"Bearer {token}"}


def _until_end(reader: Reader) -> list[Sse]:
    """The events left on the stream, up to its end (a hang guard: WAIT_S per item)."""
    out = []
    while (event := reader.next()) is not None:
        out.append(event)
    return out


@pytest.fixture
def quick_recheck(monkeypatch: pytest.MonkeyPatch) -> None:
    from app.api import access

    monkeypatch.setattr(access, "ACCESS_RECHECK_S", 0.2)  # keep-alives every 0.3 s trigger re-checks


def test_stream_ends_once_its_token_is_revoked_and_sends_nothing_after(
    live: Live, quick_recheck: None
) -> None:
    with live.client() as http:
        run = _new_run(live, http)
        made = http.post("/api/v1/tokens", json={"name": "stream"}, headers=live.user)
        assert made.status_code == 201, made.text
        token = {"Authorization": f"Bearer {made.json()['token']}"}
        reader = Reader(live, f"/api/v1/runs/{run}/events", token)
        everything = Reader(live, "/api/v1/events", token)
        try:
            assert reader.take(1)[0].event == "status"
            _epoch(live, http, run, 0)
            assert reader.take(1)[0].data["epoch"] == 0
            revoked = http.delete(f"/api/v1/tokens/{made.json()['id']}", headers=live.user)
            assert revoked.status_code == 204, revoked.text
            time.sleep(1.0)  # several keep-alives: a re-check after the revocation
            _epoch(live, http, run, 1)
            assert http.post(f"/api/v1/runs/{run}/cancel", headers=live.user).status_code == 200
            assert _until_end(reader) == [] and _until_end(everything) == []
            again = http.get(f"/api/v1/runs/{run}/events", headers=token)
            assert again.status_code == 401
        finally:
            reader.close()
            everything.close()


def test_stream_of_a_member_removed_ends_and_the_all_runs_stream_drops_the_project(
    live: Live, quick_recheck: None
) -> None:
    with live.client() as http:
        _new_run(live, http)  # makes project "p"
        carol_id, carol = _member(live, http, "carol@example.org")
        everything = Reader(live, "/api/v1/events", carol)
        try:
            job = http.post("/api/v1/jobs", json={"project": "p"}, headers=live.user)
            assert job.status_code == 201, job.text
            run = int(job.json()[0]["id"])
            [queued] = everything.take(1)  # readable: remembered for this run until the next re-check
            assert (queued.data["run_id"], queued.data["status"]) == (run, "queued")
            reader = Reader(live, f"/api/v1/runs/{run}/events", carol)
            assert reader.take(1)[0].event == "status"
            removed = http.delete(f"/api/v1/projects/p/members/{carol_id}", headers=live.user)
            assert removed.status_code == 204, removed.text
            time.sleep(1.0)
            assert http.post(f"/api/v1/runs/{run}/claim", json={}, headers=live.worker).status_code == 200
            _epoch(live, http, run, 0)
            assert http.post(f"/api/v1/runs/{run}/cancel", headers=live.user).status_code == 200
            assert _until_end(reader) == []
            time.sleep(1.0)  # the claim's and the cancel's status events have gone out by now
            sent = []
            while not everything.events.empty():
                sent.append(everything.events.get_nowait())
            assert sent and all(isinstance(item, str) for item in sent), sent  # keep-alives only
            assert http.get(f"/api/v1/runs/{run}/events", headers=carol).status_code == 404
        finally:
            reader.close()
            everything.close()


def test_stream_when_unknown_run_or_no_token_is_refused(live: Live) -> None:
    with live.client() as http:
        missing = http.get("/api/v1/runs/4242/events", headers=live.user)
        assert missing.status_code == 404 and "4242" in missing.json()["message"]
        assert http.get("/api/v1/events").status_code == 401
        bad = http.get("/api/v1/events", headers=live.user | {"Last-Event-ID": "nope"})
        assert bad.status_code == 422


def test_stream_when_idle_sends_keepalive_comments(tmp_path: Path, sqlite_url: str) -> None:
    server = start(_settings(tmp_path, sqlite_url), keepalive_s=0.2)
    try:
        with server.client() as http:
            run = _new_run(server, http)
        reader = Reader(server, f"/api/v1/runs/{run}/events", server.user)
        reader.take(1)
        assert reader.comment_or_event() == ": keep-alive"
        reader.close()
    finally:
        server.stop()


@pytest.mark.redis
def test_stream_when_redis_delivers_across_two_apps_sharing_the_database(
    tmp_path: Path, database_url: str, redis_url: str
) -> None:
    prefix = f"cwtest-{uuid.uuid4().hex[:8]}"
    settings = _settings(tmp_path, database_url, redis_url)
    writer = start(settings, redis_prefix=prefix)
    streamer = start(settings, redis_prefix=prefix)
    try:
        with writer.client() as http:
            run = _new_run(writer, http)
            reader = Reader(streamer, f"/api/v1/runs/{run}/events", streamer.user)
            all_runs = Reader(streamer, "/api/v1/events", streamer.user)
            reader.take(1)
            records = [_epoch(writer, http, run, e) for e in range(2)]
            assert [e.data for e in reader.take(2)] == records
            http.post(
                f"/api/v1/runs/{run}/finish", json={"attempt": 1, "status": "failed"}, headers=writer.worker
            )
            [status] = reader.take(1)
            assert status.data["status"] == "failed" and reader.next() is None
            [badge] = all_runs.take(1)
            assert (badge.data["run_id"], badge.data["status"]) == (run, "failed")
            reader.close()
            all_runs.close()
    finally:
        writer.stop()
        streamer.stop()


def _field(frame: bytes, name: str) -> str:
    """One field of an SSE frame (fields may come in any order)."""
    [value] = [
        line.partition(": ")[2] for line in frame.decode().splitlines() if line.startswith(f"{name}: ")
    ]
    return value


def test_stream_when_subscriber_lagged_rereads_missed_events_from_database(database: Database) -> None:
    """A full queue or a Redis reconnect flags the subscription; the stream re-reads from the DB."""
    with database.transaction() as session:
        project = Project(name="lag")
        session.add(project)
        session.flush()
        run = Run(project_id=project.id, kind="sdk", status="running", attempt=1)
        session.add(run)
        session.flush()
        first = record_event(session=session, run_id=run.id, type="log", payload={"line": "a"}).id
    broker = InProcessBroker()

    async def scenario() -> list[bytes]:
        stream = sse.run_events(database, broker, run=run, newest=first, last_event_id=0, keepalive_s=0.05)
        out = [await anext(stream), await anext(stream)]  # retry line, then the replayed log line
        with database.transaction() as session:  # written but never published
            for line in ("b", "c"):
                record_event(session=session, run_id=run.id, type="log", payload={"line": line})
        [sub] = broker.hub._subs[run.id]
        sub.lagged = True
        out += [await anext(stream), await anext(stream)]
        await stream.aclose()
        return out

    chunks = asyncio.run(scenario())
    assert chunks[0].startswith(b"retry:")
    lines = [json.loads(_field(c, "data")) for c in chunks[1:]]
    assert lines == [{"line": "a"}, {"line": "b"}, {"line": "c"}]
    ids = [int(_field(c, "id")) for c in chunks[1:]]
    assert ids == [first, first + 1, first + 2]
