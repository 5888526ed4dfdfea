"""Bearer tokens: every /api/v1 route needs one; worker tokens may only ingest."""

from __future__ import annotations

from pathlib import Path

import pytest
from apikit import Api

from app.auth.api_tokens import revoke_token

READ_ROUTES = [
    ("GET", "/api/v1/runs"),
    ("GET", "/api/v1/runs/{id}"),
    ("GET", "/api/v1/runs/{id}/epochs"),
    ("GET", "/api/v1/runs/{id}/epochs.csv"),
    ("GET", "/api/v1/runs/{id}/logs"),
    ("POST", "/api/v1/runs"),
    ("POST", "/api/v1/jobs"),
    ("POST", "/api/v1/runs/{id}/cancel"),
]
INGEST_ROUTES = [
    ("POST", "/api/v1/runs/{id}/claim"),
    ("POST", "/api/v1/runs/{id}/heartbeat"),
    ("POST", "/api/v1/runs/{id}/finish"),
    ("PUT", "/api/v1/runs/{id}/epochs/0"),
    ("POST", "/api/v1/runs/{id}/metrics"),
    ("POST", "/api/v1/runs/{id}/logs"),
]


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    """Validation and auth do not depend on the database: SQLite only, to keep the suite fast."""
    return f"sqlite:///{tmp_path / 'collapsewatch.db'}"


@pytest.mark.parametrize(("method", "path"), READ_ROUTES + INGEST_ROUTES)
def test_request_when_no_token_returns_401_with_challenge(api: Api, method: str, path: str) -> None:
    response = api.client.request(method, path.format(id=1), json={})
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert "Bearer" in response.json()["message"]


@pytest.mark.parametrize(("method", "path"), READ_ROUTES)
def test_request_when_worker_token_on_user_route_returns_403(api: Api, method: str, path: str) -> None:
    run = api.sdk_run()
    response = api.client.request(method, path.format(id=run["id"]), json={}, headers=api.worker)
    assert response.status_code == 403 and "worker tokens" in response.json()["message"]


def test_request_when_worker_token_on_ingestion_route_is_accepted(api: Api) -> None:
    job = api.job()
    assert api.claim(job["id"]).status_code == 200
    assert api.put_epoch(job["id"], 0).status_code == 200


def test_request_when_token_unknown_or_malformed_returns_401(api: Api) -> None:
    for header in ("Bearer cw_nope", "Basic abc", "Bearer ", "cw_x"):
        response = api.client.get("/api/v1/runs", headers={"Authorization": header})
        assert response.status_code == 401, header


def test_request_when_token_revoked_returns_401(api: Api) -> None:
    assert api.client.get("/api/v1/runs", headers=api.user).status_code == 200
    with api.db.transaction() as session:
        from sqlalchemy import select

        from app.auth.tokens import hash_token
        from app.models import ApiToken

        token_id = session.scalar(
            select(ApiToken.id).where(ApiToken.token_hash == hash_token(api.user_token))
        )
        assert token_id is not None and revoke_token(session=session, token_id=token_id)
    assert api.client.get("/api/v1/runs", headers=api.user).status_code == 401


def test_request_when_authenticated_records_token_last_use(api: Api) -> None:
    from sqlalchemy import select

    from app.auth.tokens import hash_token
    from app.models import ApiToken

    api.client.get("/api/v1/runs", headers=api.user)
    with api.db.session(write=False) as session:
        used = session.scalar(
            select(ApiToken.last_used_at).where(ApiToken.token_hash == hash_token(api.user_token))
        )
    assert used is not None and used.tzinfo is not None
