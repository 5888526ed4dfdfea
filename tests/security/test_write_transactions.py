"""Issue 15, finding 3: no request opens two write transactions (on SQLite the second would wait for
the lock the first holds). A request's small writes while authenticating (a token's last use, a
local-mode sign-in) join the request's own write session (``app.deps.side_write``) only when that
session was opened first, so every write route must declare ``SessionDep`` before its caller (the
ingestion routes' ``IngestSession`` opens it before resolving the caller, itself)."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import pytest
from fastapi import Request
from fastapi.testclient import TestClient
from seckit import route_objects, team_app

from app.api import access
from app.deps import get_principal, get_session, request_session

WRITES = {"POST", "PUT", "PATCH", "DELETE"}


def _resolution_order(dependant: Any, found: list[Any]) -> list[Any]:
    """The session and principal dependencies in the order FastAPI resolves them (depth first)."""
    for sub in dependant.dependencies:
        _resolution_order(sub, found)
        if sub.call in (get_session, get_principal) and sub.call not in found:
            found.append(sub.call)
        if sub.call is access.ingest_session:  # the session, then the caller (checked below)
            found.extend(call for call in (get_session, get_principal) if call not in found)
    return found


def test_write_routes_open_their_session_before_authenticating() -> None:
    app = team_app(Path(tempfile.mkdtemp(prefix="cw-writes-")))
    checked, late = 0, []
    for path, route in route_objects(list(app.routes)):
        dependant = getattr(route, "dependant", None)
        if dependant is None or not (getattr(route, "methods", None) or set()) & WRITES:
            continue
        order = _resolution_order(dependant, [])
        if get_session in order and get_principal in order:
            checked += 1
            if order.index(get_principal) < order.index(get_session):
                late.append(path)
    assert checked >= 20 and late == [], f"declare `session: SessionDep` before the caller in: {late}"


@pytest.mark.parametrize(
    "path", ["/api/v1/runs/1/epochs/0", "/api/v1/runs/1/metrics", "/api/v1/runs/0/heartbeat"]
)
def test_the_ingestion_dependency_opens_the_session_before_authenticating(
    path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = team_app(Path(tempfile.mkdtemp(prefix="cw-writes-")))
    opened: list[bool] = []
    real = access.get_principal

    async def spy(request: Request) -> Any:
        opened.append(request_session(request) is not None)
        return await real(request)

    monkeypatch.setattr(access, "get_principal", spy)
    with TestClient(app) as client:
        method = client.put if "epochs" in path else client.post
        answer = method(path, json={}, headers={"Authorization": "Bearer cw_not_a_token"})
    assert answer.status_code == 401  # the caller is checked first, before the body and the run id
    assert opened == [True]
