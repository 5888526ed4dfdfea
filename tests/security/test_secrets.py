"""Secrets at rest and in logs: no raw API token, worker token, session cookie, share link,
invitation or password is stored in the database or written to the application's logs."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from seckit import team_app
from sqlalchemy import select

from app.auth.accounts import create_user
from app.auth.api_tokens import create_token
from app.models import import_all_models

PASSWORD = "correct horse battery staple"
EMAIL = "ana@example.org"


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    with TestClient(team_app(tmp_path), follow_redirects=False) as test_client:
        yield test_client


def _secrets(client: TestClient) -> dict[str, str]:
    """Sign in with a password and mint one of every kind of secret through the real routes."""
    db = client.app.state.db  # type: ignore[attr-defined]
    with db.transaction() as session:
        user = create_user(session=session, email=EMAIL, password=PASSWORD, is_admin=True)
        bearer = create_token(session=session, user=user, name="seed").token
    login_page = client.get("/login").text
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', login_page)
    assert csrf is not None
    signed_in = client.post("/login", data={"email": EMAIL, "password": PASSWORD, "csrf_token": csrf[1]})
    assert signed_in.status_code == 303, signed_in.text
    cookie = client.cookies.get("cw_session")
    assert cookie
    client.cookies.clear()
    auth = {"Authorization": f"Bearer {bearer}"}

    def ok(method: str, path: str, body: dict[str, object]) -> dict[str, str]:
        response = client.request(method, path, json=body, headers=auth)
        assert response.status_code < 300, f"{path}: {response.text}"
        return dict(response.json())

    ok("POST", "/api/v1/projects", {"name": "sec"})
    personal = ok("POST", "/api/v1/tokens", {"name": "laptop"})["token"]
    worker = ok("POST", "/api/v1/projects/sec/worker-tokens", {"name": "gpu-1"})["token"]
    invite = ok("POST", "/api/v1/projects/sec/invitations", {"email": "bo@example.org"})["url"]
    run = ok("POST", "/api/v1/runs", {"project": "sec"})
    query = f"runs={run['id']}&stat=mean_sv"
    report = ok("POST", "/api/v1/reports", {"project": "sec", "title": "r", "query": query})
    share = ok("POST", f"/api/v1/reports/{report['id']}/shares", {})["url"]
    shared_page = client.get("/s/" + share.rsplit("/s/", 1)[1])
    assert shared_page.status_code == 200
    return {
        "password": PASSWORD, "bearer": bearer, "personal token": personal, "worker token": worker,
        "session cookie": cookie, "invitation": invite.rsplit("/", 1)[1],
        "share link": share.rsplit("/", 1)[1],
    }  # fmt: skip


def test_no_raw_secret_is_stored_or_logged(client: TestClient, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    secrets = _secrets(client)
    assert all(len(value) >= 16 for value in secrets.values()), secrets

    db = client.app.state.db  # type: ignore[attr-defined]
    dump: list[str] = []
    with db.session(write=False) as session:
        for table in import_all_models().sorted_tables:
            dump += [repr(tuple(row)) for row in session.execute(select(table))]
    stored = "\n".join(dump)
    # The server's own logs (httpx is the test client logging the URLs it requests).
    logged = "\n".join(r.getMessage() for r in caplog.records if not r.name.startswith(("httpx", "httpcore")))
    assert "ana@example.org" in stored  # the dump really holds the accounts
    for name, value in secrets.items():
        assert value not in stored, f"the raw {name} is stored in the database"
        assert value not in logged, f"the raw {name} is in the logs"
