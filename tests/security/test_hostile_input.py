"""Issue 15, finding 5: no input yields a 5xx. A hostile set is sent to every route of the app (API,
pages, static, docs), signed in (a bearer token for the API, the local-mode browser session with
its CSRF token for forms), on SQLite and PostgreSQL: Unicode and odd integers in every path and
query parameter, non-finite numbers, deep and huge JSON and overlong strings in bodies, NUL
characters, bytes that are not UTF-8. Every answer must be < 500, and no request may open two
write transactions.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from seckit import FILL, route_objects, team_settings
from txcount import count_write_transactions

from app.auth.api_tokens import create_token, ensure_admin
from app.main import create_app
from app.settings import Settings
from tests.conftest import pg_scratch
from tests.fuzz.fuzzkit import FirstChunkOnly

TEXT = [
    "²",
    "①",
    "\uff11\uff12",
    "١٢",
    " 12",
    "+12",
    "1_000",
    "12.0",
    "1e999",
    "NaN",
    "-1",
    "9" * 40,
    "x" * 3000,
    "\x00",
]
DEEP = b'{"a":' * 40 + b"1" + b"}" * 40
BODIES: list[bytes] = [
    b'{"attempt": NaN, "status": "succeeded", "metrics": {}, "stats": null}',
    b'{"attempt": 1, "points": [{"key": "a", "step": 1, "value": Infinity}]}',
    b'{"attempt": 1, "metrics": {"val_acc": -Infinity}, "stats": null}',
    b'{"project": "p", "config": {"lr": 1e999, "x": [1, 2, NaN]}}',
    b'{"project": "p", "name": "n", "tags": ["' + b"t" * 1000 + b'"]}',
    b'{"project": "' + b"p" * 100_000 + b'", "name": "' + b"n" * 100_000 + b'"}',
    b'{"email": "a@b.org", "role": "viewer", "name": "a\\u0000b", "title": "' + b"t" * 5000 + b'"}',
    b'{"project": "p", "config": ' + DEEP + b"}",
    b"[" * 5000 + b"]" * 5000,
    b"[" + b",".join([b"1e308"] * 50_000) + b"]",
    b"\xff\xfe{}",
]


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def hostile_settings(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Settings]:
    overrides: dict[str, Any] = {"local_autologin": True, "api_rate_limit_per_second": 0}
    if request.param == "sqlite":
        yield team_settings(tmp_path, **overrides)
        return
    for url in pg_scratch("cw_hostile"):
        yield team_settings(tmp_path, database_url=url, **overrides)


def _params(dependant: Any, kind: str) -> list[str]:
    names = [p.alias for p in getattr(dependant, kind)]
    for sub in dependant.dependencies:
        names += _params(sub, kind)
    return list(dict.fromkeys(names))


def _url(path: str, values: dict[str, str]) -> str:
    if path.startswith("/static/"):
        path = path.replace("{name}", quote(values.get("name", "cw.css"), safe=""))
    return re.sub(r"\{(\w+)(?::\w+)?\}", lambda m: quote(values.get(m.group(1), "1"), safe=""), path)


def requests_for(path: str, method: str, route: Any) -> Iterator[tuple[str, dict[str, Any]]]:
    """(url, request keyword arguments) of the hostile set for one route."""
    dependant = getattr(route, "dependant", None)
    names = re.findall(r"\{(\w+)", path)
    for name in names:
        for text in TEXT:
            yield _url(path, FILL | {name: text}), {}
    base = _url(path, FILL)
    if dependant is None:
        yield base + "?x=%C2%B2", {}
        return
    for name in _params(dependant, "query_params"):
        for text in TEXT:
            yield base, {"params": {name: text}}
    if method in ("POST", "PUT", "PATCH", "DELETE"):
        form_fields = _params(dependant, "body_params")
        for body in BODIES:
            yield base, {"content": body, "headers": {"content-type": "application/json"}}
        for text in TEXT:
            yield base, {"data": {name: text for name in form_fields} | {"csrf_token": "CSRF"}}


def _csrf(client: TestClient) -> str:
    found = re.search(r'name="csrf-token" content="([^"]+)"', client.get("/account").text)
    return found.group(1) if found else ""


def _app(settings: Settings) -> tuple[FastAPI, Any]:
    app = create_app(settings)
    app.state.enqueue = lambda run_id: None
    app.state.sse_keepalive_s = 0.05
    return app, count_write_transactions(app)


def test_hostile_input_to_every_route_gets_an_answer_below_500(hostile_settings: Settings) -> None:
    app, writes = _app(hostile_settings)
    failures: list[str] = []
    sent = 0
    with TestClient(app) as setup:
        with app.state.db.transaction() as session:
            admin = ensure_admin(session=session, email=hostile_settings.admin_email)
            create_token(session=session, user=admin, name="decoy")  # id 1: what FILL's ids revoke
            token = create_token(session=session, user=admin, name="hostile").token
        bearer = {"Authorization": f"Bearer {token}"}
        run = setup.post("/api/v1/runs", json={"project": "p", "config": {"lr": 0.1}}, headers=bearer)
        assert run.status_code == 201, run.text
        with TestClient(FirstChunkOnly(app), raise_server_exceptions=False) as client:
            routes = sorted(
                {(path, method, id(route)): route for path, route in route_objects(list(app.routes))
                 for method in (getattr(route, "methods", None) or []) if method != "HEAD"}.items()
            )  # fmt: skip
            for (path, method, _), route in routes:
                csrf = _csrf(client)
                for url, kwargs in requests_for(path, method, route):
                    if "data" in kwargs:
                        kwargs = {
                            "data": {k: (csrf if v == "CSRF" else v) for k, v in kwargs["data"].items()}
                        }
                    headers = {**kwargs.pop("headers", {}), **(bearer if path.startswith("/api/") else {})}
                    response = client.request(method, url, headers=headers, follow_redirects=False, **kwargs)
                    sent += 1
                    if response.status_code >= 500:
                        failures.append(f"{method} {url[:120]} {str(kwargs)[:120]} -> {response.status_code}")
    assert sent > 1000 and failures == [], "\n".join(failures[:40])
    assert writes.over(1) == [], sorted({(method, path) for method, path, _ in writes.over(1)})
