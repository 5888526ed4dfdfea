"""Authentication on every route: each (method, path) the app serves is called without credentials.

API routes answer 401 with a Bearer challenge, pages redirect to /login; only the routes in PUBLIC
answer without a session, and the token-gated ones (share links, invitations) refuse a bogus
token. A new route that forgets its dependency fails here. Worker tokens only reach the ingestion
routes (everything else under /api answers 403 or 404).
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from seckit import Route, all_routes, team_app

from app.auth.api_tokens import create_token, ensure_admin

# Reachable without a session, and why.
PUBLIC: dict[str, str] = {
    "GET /login": "the sign-in form",
    "POST /login": "signing in (CSRF-checked, rate-limited per account)",
    "GET /healthz": "liveness probe, no data",
    "GET /static/plotly.min.js": "public JavaScript",
    "GET /static/{name}": "public CSS/JavaScript of the dashboard",
    "GET /openapi.json": "the API description (no data)",
    "GET /docs": "the API reference page, rendered from the API description (no data)",
    "GET /s/{token}": "share link: the token is the credential",
    "GET /s/{token}/export.html": "share link download",
    "GET /s/{token}/export.csv": "share link download",
    "GET /invite/{token}": "invitation: the token is the credential",
    "POST /invite/{token}": "accepting an invitation (token + CSRF)",
}
TOKEN_GATED = ("/s/", "/invite/")
# What a worker token may call (DESIGN.md §4/§6); everything else under /api is for users.
INGESTION = {
    "POST /api/v1/runs/{run_id}/claim", "POST /api/v1/runs/{run_id}/heartbeat",
    "POST /api/v1/runs/{run_id}/finish", "POST /api/v1/runs/{run_id}/logs",
    "PUT /api/v1/runs/{run_id}/epochs/{epoch}", "POST /api/v1/runs/{run_id}/metrics",
    "PUT /api/v1/runs/{run_id}/checkpoint", "GET /api/v1/runs/{run_id}/checkpoint",
}  # fmt: skip

_ROOT = Path(tempfile.mkdtemp(prefix="cw-sec-routes-"))
atexit.register(shutil.rmtree, _ROOT, True)
ROUTES = all_routes(team_app(_ROOT))


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    with TestClient(team_app(_ROOT), follow_redirects=False) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def worker_headers(client: TestClient) -> dict[str, str]:
    db = client.app.state.db  # type: ignore[attr-defined]
    with db.transaction() as session:
        admin = ensure_admin(session=session, email="admin@localhost")
        token = create_token(session=session, user=admin, name="w", kind="worker").token
    return {"Authorization": f"Bearer {token}"}


def test_route_list_is_complete_and_public_list_is_current() -> None:
    names = {str(route) for route in ROUTES}
    assert len(ROUTES) > 60 and "PUT /api/v1/runs/{run_id}/epochs/{epoch}" in names
    assert set(PUBLIC) <= names, f"stale PUBLIC entries: {set(PUBLIC) - names}"
    assert names >= INGESTION, f"stale INGESTION entries: {INGESTION - names}"


@pytest.mark.parametrize("route", ROUTES, ids=str)
def test_route_without_credentials_is_refused_unless_public(client: TestClient, route: Route) -> None:
    response = client.request(route.method, route.url)
    location = response.headers.get("location", "")
    if str(route) in PUBLIC:
        assert response.status_code < 500, response.text
        if route.path.startswith(TOKEN_GATED):
            assert response.status_code in (403, 404), f"{route}: a bogus token got {response.status_code}"
    elif route.path.startswith("/api/"):
        assert response.status_code == 401, f"{route}: {response.status_code} {response.text[:200]}"
        assert response.headers.get("www-authenticate") == "Bearer"
    elif route.path == "/":
        assert response.status_code == 303 and location == "/runs"  # and /runs needs a session
    else:
        assert response.status_code == 303, f"{route}: {response.status_code} {response.text[:200]}"
        assert location.startswith("/login?next="), location


@pytest.mark.parametrize("route", [r for r in ROUTES if r.path.startswith("/api/")], ids=str)
def test_worker_token_reaches_only_the_ingestion_routes(
    client: TestClient, worker_headers: dict[str, str], route: Route
) -> None:
    response = client.request(route.method, route.url, headers=worker_headers)
    if str(route) in INGESTION:
        assert response.status_code not in (401, 403), f"{route}: {response.status_code}"
    else:
        assert response.status_code in (403, 404), f"{route}: {response.status_code} {response.text[:200]}"
