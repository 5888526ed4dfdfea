"""What the fuzzer found, pinned directly: 405 lists every method, unreadable bodies, 422 shape."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

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


# Issue 15, finding 5: odd input answered 500 --------------------------------------------------


@pytest.fixture
def seeded(tmp_path: Path) -> Iterator[tuple[TestClient, dict[str, str], int]]:
    from fuzzkit import seed

    app = make_app(tmp_path)
    target = seed(app)
    with TestClient(app) as test_client:
        yield test_client, target.headers, target.run_ids[0]


RAW_BODIES = [  # (path template, raw JSON, the field the 422 must name)
    ("/api/v1/runs/{run}/epochs/9", b'{"attempt": Infinity, "metrics": {}, "stats": null}', "body.attempt"),
    ("/api/v1/runs/{run}/epochs/9", b'{"attempt": 1, "metrics": {"lr": -Infinity}}', "body.metrics.lr"),
    ("/api/v1/runs/{run}/metrics", b'{"attempt": 1, "points": [{"key": "a", "step": 1, "value": NaN}]}',
     "body.points.0.value"),
    ("/api/v1/runs", b'{"project": "p", "config": {"opt": {"betas": [0.9, 1e999]}}}',
     "body.config.opt.betas.1"),
    ("/api/v1/runs", b'{"project": "p", "config": {"x": NaN}}', "body.config.x"),
]  # fmt: skip


@pytest.mark.parametrize(("path", "body", "field"), RAW_BODIES)
def test_non_finite_number_anywhere_in_a_json_body_gets_422_naming_the_field(
    seeded: tuple[TestClient, dict[str, str], int], path: str, body: bytes, field: str
) -> None:
    client, headers, run_id = seeded
    method = "PUT" if "/epochs/" in path else "POST"
    response = client.request(
        method, path.format(run=run_id), content=body, headers=headers | {"content-type": "application/json"}
    )
    assert response.status_code == 422, response.text
    assert response.json()["message"].startswith(f"{field}: must be a finite number")


def test_json_nested_too_deep_gets_422_and_nothing_is_stored(
    seeded: tuple[TestClient, dict[str, str], int],
) -> None:
    client, headers, _ = seeded
    json_headers = headers | {"content-type": "application/json"}
    before = client.get("/api/v1/runs?project=p", headers=headers).headers["x-total-count"]
    for depth in (40, 800, 100_000):  # past the limit; past pydantic's serialiser; past the parser
        body = b'{"project": "p", "config": {"a": ' + b"[" * depth + b"]" * depth + b"}}"
        response = client.post("/api/v1/runs", content=body, headers=json_headers)
        assert response.status_code == 422, (depth, response.text)
        assert "nested deeper than 32 levels" in response.json()["message"]
    ok = b'{"project": "p", "config": {"a": ' + b"[" * 30 + b"]" * 30 + b"}}"
    assert client.post("/api/v1/runs", content=ok, headers=json_headers).status_code == 201
    after = client.get("/api/v1/runs?project=p", headers=headers).headers["x-total-count"]
    assert int(after) == int(before) + 1


@pytest.mark.parametrize("value", ["²", "①", "١٢", "\uff11\uff12", " 12", "+12", "1_000", "12.0"])
def test_integer_in_a_path_or_query_must_be_ascii_digits(
    seeded: tuple[TestClient, dict[str, str], int], value: str
) -> None:
    client, headers, run_id = seeded
    value = quote(value, safe="")  # "+" in a query string is a space
    compare = [f"/compare?runs={value}", f"/compare?runs={run_id}&epoch={value}"]
    for url in (
        *(compare if value != "%2012" else []),  # the compare page trims spaces around list items
        f"/api/v1/runs?limit={value}",
        f"/api/v1/runs/{run_id}/epochs?since={value}",
        f"/api/v1/series?run={value}&key=mean_sv",
        f"/api/v1/runs/{value}",
    ):
        response = client.get(url, headers=headers)
        assert 400 <= response.status_code < 500, (url, response.status_code)
    refused = client.get(f"/api/v1/runs?limit={value}", headers=headers)
    assert refused.status_code == 422 and "ASCII digits" in refused.json()["message"]
    assert client.get(f"/compare?runs={run_id}", headers=headers).status_code == 200


def test_tags_and_names_have_length_limits_with_a_clear_422(
    seeded: tuple[TestClient, dict[str, str], int],
) -> None:
    client, headers, _ = seeded
    cases = [
        ({"project": "p", "tags": ["t" * 65]}, "body.tags.0: String should have at most 64 characters"),
        ({"project": "p", "tags": [""]}, "body.tags.0: String should have at least 1 character"),
        ({"project": "p", "name": "n" * 201}, "body.name: String should have at most 200 characters"),
        ({"project": "p" * 65}, "body.project: String should match pattern"),
    ]
    for body, message in cases:
        response = client.post("/api/v1/runs", json=body, headers=headers)
        assert response.status_code == 422 and response.json()["message"].startswith(message), response.text
    job = client.post("/api/v1/jobs", json={"project": "p", "tags": ["t" * 65]}, headers=headers)
    assert job.status_code == 422 and "body.tags.0" in job.json()["message"]
    assert (
        client.post("/api/v1/runs", json={"project": "p", "tags": ["t" * 64]}, headers=headers).status_code
        == 201
    )


def test_lone_surrogate_in_a_json_string_gets_a_4xx_not_a_500(client: TestClient) -> None:
    """An outsider's probe: ``"\\ud800"`` is valid JSON, but the 422 that echoed it back could not be
    encoded as UTF-8 (500, connection dropped)."""
    from app.auth.api_tokens import create_token, ensure_admin

    with client.app.state.db.transaction() as session:  # type: ignore[attr-defined]
        admin_user = ensure_admin(session=session, email="admin@localhost")
        token = create_token(session=session, user=admin_user, name="t").token
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    bodies = {
        "/api/v1/runs": [b'{"project": "p", "name": "\\ud800", "tags": 5}', b'{"project": "\\udfff"}'],
        "/api/v1/projects": [b'{"name": "\\ud800x", "extra": 1}'],
        "/api/v1/tokens": [b'{"name": "\\udfff", "bad": true}'],
        "/api/v1/reports": [b'{"project": "\\ud800", "title": "t", "query": 5}'],
    }
    for path, payloads in bodies.items():
        for body in payloads:
            response = client.post(path, content=body, headers=headers)
            assert 400 <= response.status_code < 500, (path, body, response.status_code, response.text)
            assert response.json()["message"], (path, body)
    config = b'{"project": "p", "config": {"\\ud800": "\\udfff"}, "tags": ["\\ud800"]}'
    stored = client.post("/api/v1/runs", content=config, headers=headers)
    assert stored.status_code < 500, stored.text
