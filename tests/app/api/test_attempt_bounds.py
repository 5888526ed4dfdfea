"""An attempt is a 32-bit integer in the database: one beyond it is bad input (422 naming the field
and its bound) on every backend and every route that takes one, never a stale attempt (409) on one
backend and a database error on the other; the largest storable attempt is merely stale (409)."""

from __future__ import annotations

from typing import Any

import pytest
from apikit import STATS, Api
from sqlalchemy import func, select

from app.models import Epoch, Metric, RunEvent
from collapsewatch.contract import MAX_ATTEMPT

# (route, method, path under the run, body for an attempt, or None: the attempt goes in the query)
ROUTES: list[tuple[str, str, str, Any]] = [
    ("epoch", "PUT", "/epochs/0", lambda a: {"attempt": a, "stats": STATS}),
    (
        "metrics",
        "POST",
        "/metrics",
        lambda a: {"attempt": a, "points": [{"key": "k", "step": 0, "value": 1}]},
    ),
    ("logs", "POST", "/logs", lambda a: {"attempt": a, "lines": ["hello"]}),
    ("heartbeat", "POST", "/heartbeat", lambda a: {"attempt": a}),
    ("finish", "POST", "/finish", lambda a: {"attempt": a, "status": "succeeded"}),
    ("checkpoint", "PUT", "/checkpoint?epoch=0&attempt={a}", None),
]


def _send(api: Api, run_id: int, method: str, path: str, body: Any, attempt: int) -> Any:
    url = f"/api/v1/runs/{run_id}{path.format(a=attempt)}"
    if body is None:
        return api.client.request(method, url, content=b"checkpoint bytes", headers=api.worker)
    return api.client.request(method, url, json=body(attempt), headers=api.worker)


def _written(api: Api) -> tuple[int, ...]:
    with api.db.session(write=False) as session:
        return tuple(
            int(session.scalar(select(func.count()).select_from(m)) or 0) for m in (Epoch, Metric, RunEvent)
        )


@pytest.mark.parametrize(("method", "path", "body"), [pytest.param(*r[1:], id=r[0]) for r in ROUTES])
def test_attempt_beyond_32_bits_is_422_naming_the_bound(api: Api, method: str, path: str, body: Any) -> None:
    run = api.sdk_run()
    before = _written(api)
    response = _send(api, run["id"], method, path, body, MAX_ATTEMPT + 1)
    assert response.status_code == 422, response.text
    assert "attempt" in response.text and "2147483647" in response.text, response.text
    assert _written(api) == before
    assert api.client.get(f"/api/v1/runs/{run['id']}", headers=api.user).json()["status"] == run["status"]


@pytest.mark.parametrize(("method", "path", "body"), [pytest.param(*r[1:], id=r[0]) for r in ROUTES])
def test_largest_storable_attempt_is_stale_not_bad_input(api: Api, method: str, path: str, body: Any) -> None:
    run = api.sdk_run()
    before = _written(api)
    response = _send(api, run["id"], method, path, body, MAX_ATTEMPT)
    assert response.status_code == 409, response.text
    assert _written(api) == before
