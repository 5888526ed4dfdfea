"""The request body limit (app/web/limits.py): Starlette's RequestBodyLimitMiddleware app-wide with
MAX_BODY_BYTES, a larger per-router limit for checkpoint uploads, and every 413 in the API's JSON
shape with the security headers, however the body came (declared length or chunked) and whether or
not the route read it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.auth.api_tokens import create_token, ensure_admin
from app.main import create_app
from app.settings import Settings

LIMIT = 2048
CHECKPOINT_LIMIT = 16 * 1024


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'cw.db'}", broker_url=f"sqla+sqlite:///{tmp_path / 'b.db'}",
        artifact_dir=tmp_path / "artifacts", secret_key="test", maintenance_interval_seconds=0,
        max_body_bytes=LIMIT, max_checkpoint_bytes=CHECKPOINT_LIMIT, _env_file=None,
    )  # type: ignore[call-arg]  # fmt: skip
    app = create_app(settings)
    app.state.enqueue = lambda run_id: None
    with TestClient(app) as test_client:
        with app.state.db.transaction() as session:
            admin = ensure_admin(session=session, email="admin@localhost")
            token = create_token(session=session, user=admin, name="t").token
        test_client.headers["Authorization"] = f"Bearer {token}"
        yield test_client


def _chunked(size: int) -> Iterator[bytes]:
    for _ in range(size // 512):
        yield b"x" * 512


def _assert_json_413(response: Any, limit: int, hint: str) -> None:
    assert response.status_code == 413, response.text
    assert response.headers["content-type"] == "application/json"
    assert f"larger than {limit} bytes" in response.json()["message"]
    assert hint in response.json()["message"]
    assert response.headers["x-content-type-options"] == "nosniff"
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]


@pytest.mark.parametrize("how", ["declared", "chunked"])
def test_body_over_limit_gets_json_413_naming_the_limit(client: TestClient, how: str) -> None:
    run = client.post("/api/v1/runs", json={"project": "p"}).json()
    content: Any = b"x" * (LIMIT + 1) if how == "declared" else _chunked(4 * LIMIT)
    response = client.put(
        f"/api/v1/runs/{run['id']}/epochs/1", content=content, headers={"content-type": "application/json"}
    )
    _assert_json_413(response, LIMIT, "MAX_BODY_BYTES")
    assert client.get(f"/api/v1/runs/{run['id']}/epochs").json() == []


def test_body_over_limit_on_route_that_never_reads_it_gets_json_413(client: TestClient) -> None:
    run = client.post("/api/v1/runs", json={"project": "p"}).json()
    response = client.post(f"/api/v1/runs/{run['id']}/cancel", content=b"x" * (LIMIT + 1))
    _assert_json_413(response, LIMIT, "MAX_BODY_BYTES")
    assert client.get(f"/api/v1/runs/{run['id']}").json()["cancel_requested"] is False


def test_checkpoint_route_takes_its_own_larger_limit(client: TestClient) -> None:
    [job] = client.post("/api/v1/jobs", json={"spec": {"epochs": 2}}).json()
    with client.app.state.db.transaction() as session:  # type: ignore[attr-defined]
        admin = ensure_admin(session=session, email="admin@localhost")
        token = create_token(session=session, user=admin, name="w", kind="worker").token
    worker = {"Authorization": f"Bearer {token}"}
    assert client.post(f"/api/v1/runs/{job['id']}/claim", json={}, headers=worker).status_code == 200
    url = f"/api/v1/runs/{job['id']}/checkpoint?attempt=1&epoch=1"
    octets = worker | {"content-type": "application/octet-stream"}
    assert (
        client.put(url, content=b"w" * (4 * LIMIT), headers=octets).status_code == 201
    )  # over MAX_BODY_BYTES
    for content in (b"w" * (CHECKPOINT_LIMIT + 1), _chunked(2 * CHECKPOINT_LIMIT)):
        _assert_json_413(
            client.put(url, content=content, headers=octets), CHECKPOINT_LIMIT, "MAX_CHECKPOINT_BYTES"
        )
    assert client.get(f"/api/v1/runs/{job['id']}/checkpoint", headers=worker).content == b"w" * (4 * LIMIT)
