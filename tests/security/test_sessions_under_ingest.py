"""Issue 15, findings 3 and 4: logout and a password change end sessions on the server, on SQLite
and PostgreSQL, while a worker ingests epochs as fast as it can into the same database.

A real uvicorn server (in a thread); the worker is a thread sending epoch PUTs back to back with
a worker token. SQLite's busy timeout is cut to 5 s, so a request that waited on a lock (the old
logout waited 30 s on the lock its own request held, then answered 500) fails the test. Every
request's write transactions are counted: none may open two.
"""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from seckit import STATS, team_settings
from txcount import count_write_transactions

from app.auth.api_tokens import create_token, ensure_admin
from app.auth.sessions import hash_password
from app.main import create_app
from app.models import User
from app.runs.submit import ensure_project
from app.settings import Settings
from tests.conftest import pg_scratch

PASSWORD = "correct horse battery"
NEW_PASSWORD = "a brand new passphrase"
EMAIL = "member@example.org"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def server_settings(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Settings]:
    overrides: dict[str, Any] = {"sqlite_busy_timeout_ms": 5000, "api_rate_limit_per_second": 0}
    if request.param == "sqlite":
        yield team_settings(tmp_path, **overrides)
        return
    for url in pg_scratch("cw_sessions"):
        yield team_settings(tmp_path, database_url=url, **overrides)


class Server:
    def __init__(self, settings: Settings) -> None:
        self.app = create_app(settings)
        self.app.state.enqueue = lambda run_id: None
        self.writes = count_write_transactions(self.app)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        config = uvicorn.Config(self.app, log_level="warning", lifespan="on", timeout_graceful_shutdown=2)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [sock]}, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            assert self.thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.02)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(20)


class Ingest(threading.Thread):
    """A worker sending one epoch after another, as fast as the server answers, until stopped."""

    def __init__(self, url: str, token: str, run_id: int) -> None:
        super().__init__(daemon=True)
        self.client = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=60)
        self.run_id = run_id
        self.statuses: list[int] = []
        self.halt = threading.Event()

    def run(self) -> None:
        epoch = 0
        while not self.halt.is_set():
            epoch += 1
            body = {"attempt": 1, "metrics": {"val_acc": 0.5}, "stats": STATS}
            response = self.client.put(f"/api/v1/runs/{self.run_id}/epochs/{epoch}", json=body)
            self.statuses.append(response.status_code)
        self.client.close()


def browser(url: str) -> httpx.Client:
    return httpx.Client(base_url=url, timeout=60, follow_redirects=False)


def sign_in(client: httpx.Client, password: str = PASSWORD) -> httpx.Response:
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/login").text)
    assert csrf
    return client.post("/login", data={"email": EMAIL, "password": password, "csrf_token": csrf.group(1)})


def page_csrf(client: httpx.Client) -> str:
    page = client.get("/account")
    assert page.status_code == 200, page.status_code
    found = re.search(r'name="csrf-token" content="([^"]+)"', page.text)
    assert found
    return found.group(1)


def signed_in(client: httpx.Client) -> bool:
    """Whether the cookie still works, for pages (else 303 to /login) and the API (else 401)."""
    page = client.get("/account").status_code
    api = client.get("/api/v1/me").status_code
    assert (page, api) in ((200, 200), (303, 401)), (page, api)
    return page == 200


def seed(server: Server) -> tuple[str, int]:
    """The member (with a password) in project "p", a worker token and an SDK run to ingest into."""
    settings: Settings = server.app.state.settings
    with server.app.state.db.transaction() as session:
        admin = ensure_admin(session=session, email=settings.admin_email)
        member = User(email=EMAIL, password_hash=hash_password(PASSWORD))
        session.add(member)
        session.flush()
        ensure_project(session=session, name="p", owner_id=member.id)
        user_token = create_token(session=session, user=admin, name="u").token
        worker_token = create_token(session=session, user=admin, name="w", kind="worker").token
    with httpx.Client(base_url=server.url, timeout=60) as client:
        run = client.post(
            "/api/v1/runs", json={"project": "p"}, headers={"Authorization": f"Bearer {user_token}"}
        )
        assert run.status_code == 201, run.text
    return worker_token, int(run.json()["id"])


def test_logout_and_password_change_end_sessions_while_a_worker_ingests(server_settings: Settings) -> None:
    server = Server(server_settings)
    ingest: Ingest | None = None
    try:
        worker_token, run_id = seed(server)
        ingest = Ingest(server.url, worker_token, run_id)
        ingest.start()
        while len(ingest.statuses) < 10:  # the worker is going
            assert ingest.is_alive()
            time.sleep(0.01)

        for _ in range(3):  # logout: the old cookie is refused afterwards, pages and API alike
            client = browser(server.url)
            assert sign_in(client).status_code == 303
            cookie = dict(client.cookies)
            assert signed_in(client)
            out = client.post("/logout", data={"csrf_token": page_csrf(client)})
            assert out.status_code == 303 and out.headers["location"] == "/login"
            stale = browser(server.url)
            stale.cookies.update(cookie)  # replay the cookie the browser had
            assert not signed_in(stale)

        here, elsewhere, third = browser(server.url), browser(server.url), browser(server.url)
        for client in (here, elsewhere, third):
            assert sign_in(client).status_code == 303
        created = here.post("/account/tokens", data={"name": "laptop", "csrf_token": page_csrf(here)})
        assert created.status_code == 200
        changed = here.post(
            "/account/password",
            data={"current_password": PASSWORD, "new_password": NEW_PASSWORD, "csrf_token": page_csrf(here)},
        )
        assert changed.status_code == 200, changed.text
        assert "2 other sessions signed out" in changed.text
        assert "laptop" in changed.text and "/revoke" in changed.text  # tokens listed, with revoke
        assert signed_in(here) and not signed_in(elsewhere) and not signed_in(third)
        assert sign_in(browser(server.url)).status_code == 401  # the old password
        assert sign_in(browser(server.url), NEW_PASSWORD).status_code == 303
        wrong = here.post(
            "/account/password",
            data={"current_password": "nope", "new_password": "x" * 12, "csrf_token": page_csrf(here)},
        )
        assert wrong.status_code == 422 and signed_in(here)

        ingest.halt.set()
        ingest.join(60)
        assert len(ingest.statuses) > 10 and set(ingest.statuses) == {200}, set(ingest.statuses)
    finally:
        if ingest is not None:
            ingest.halt.set()
            ingest.join(60)
        server.stop()
    assert server.writes.seen and server.writes.over(1) == []  # no request opened two writes
