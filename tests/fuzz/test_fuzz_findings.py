"""What the fuzzer found, pinned directly: 405 lists every method, unreadable bodies, 422 shape."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from fuzzkit import make_app


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    with TestClient(make_app(tmp_path)) as test_client:
        yield test_client


def test_method_not_allowed_lists_every_method_of_the_path(client: TestClient) -> None:
    response = client.delete("/api/v1/runs")
    assert response.status_code == 405
    assert set(response.headers["allow"].split(", ")) == {"GET", "POST"}


def test_unreadable_body_gets_400_that_says_what_to_send(client: TestClient) -> None:
    response = client.post("/api/v1/runs", content=b"\xb5", headers={"content-type": "application/json"})
    assert response.status_code == 400
    assert "UTF-8" in response.json()["message"]


def test_openapi_documents_errors_and_csv(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    epochs = paths["/api/v1/runs/{run_id}/epochs"]["get"]["responses"]
    assert {"401", "404", "503"} <= set(epochs)
    assert "text/csv" in epochs["200"]["content"]
    assert "204" in paths["/api/v1/runs/{run_id}/events"]["get"]["responses"]


@pytest.mark.postgres
def test_nul_character_in_text_gets_a_422_that_names_it_on_postgres(tmp_path: Path) -> None:
    import psycopg
    from fuzzkit import pg_fuzz_url

    from app.auth.api_tokens import create_token, ensure_admin

    admin_url, url = pg_fuzz_url()
    name = url.rsplit("/", 1)[1]
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        app = make_app(tmp_path, url)
        with TestClient(app) as test_client:
            with app.state.db.transaction() as session:
                admin_user = ensure_admin(session=session, email="admin@localhost")
                token = create_token(session=session, user=admin_user, name="t").token
            headers = {"Authorization": f"Bearer {token}"}
            response = test_client.post(
                "/api/v1/runs", json={"project": "p", "name": "a\u0000b"}, headers=headers
            )
        app.state.db.dispose()
        assert response.status_code == 422, response.text
        assert "NUL character" in response.json()["message"]
    finally:
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
