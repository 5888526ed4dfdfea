"""Bad input: each case is a clear 4xx naming the problem, never a 500, and nothing is written."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from apikit import STATS, Api
from sqlalchemy import func, select

from app.models import Epoch, Metric, Run, RunEvent

JSON = {"content-type": "application/json"}
MIB = 1024 * 1024


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    """Validation and auth do not depend on the database: SQLite only, to keep the suite fast."""
    return f"sqlite:///{tmp_path / 'collapsewatch.db'}"


def _counts(api: Api) -> tuple[int, ...]:
    with api.db.session(write=False) as session:
        return tuple(
            int(session.scalar(select(func.count()).select_from(model)) or 0)
            for model in (Run, Epoch, Metric, RunEvent)
        )


def _chunks(total: int) -> Iterator[bytes]:
    sent = 0
    while sent < total:
        yield b" " * 65536
        sent += 65536


# (name, method, path template, raw body, expected status, text the message must contain)
CASES: list[tuple[str, str, str, Any, int, str]] = [
    ("malformed json", "PUT", "/epochs/0", b'{"attempt": 1, ', 422, "not valid JSON"),
    ("not an object", "PUT", "/epochs/0", b"[1, 2]", 422, "body"),
    ("wrong type attempt", "PUT", "/epochs/0", {"attempt": "one"}, 422, "body.attempt"),
    ("nan metric", "PUT", "/epochs/0", b'{"attempt": 1, "metrics": {"loss": NaN}}', 422, "finite"),
    (
        "inf stat",
        "PUT",
        "/epochs/0",
        {"attempt": 1, "stats": STATS | {"mean_sv": "Infinity"}},
        422,
        "mean_sv",
    ),
    (
        "nan in spectrum",
        "PUT",
        "/epochs/0",
        b'{"attempt": 1, "stats": %s}'
        % json.dumps(STATS).replace('"singular_values": [1.5', '"singular_values": [NaN').encode(),
        422,
        "singular_values",
    ),
    ("negative epoch", "PUT", "/epochs/-1", {"attempt": 1}, 422, "path.epoch"),
    ("epoch not a number", "PUT", "/epochs/abc", {"attempt": 1}, 422, "path.epoch"),
    ("huge epoch", "PUT", "/epochs/99999999999", {"attempt": 1}, 422, "path.epoch"),
    ("unknown field", "PUT", "/epochs/0", {"attempt": 1, "metricz": {}}, 422, "body.metricz"),
    ("bad metric key", "PUT", "/epochs/0", {"attempt": 1, "metrics": {"a b": 1}}, 422, "metrics key"),
    ("attempt zero", "PUT", "/epochs/0", {"attempt": 0}, 422, "body.attempt"),
    ("huge attempt", "PUT", "/epochs/0", {"attempt": 10**30}, 422, "body.attempt"),
    (
        "huge dead_dims",
        "PUT",
        "/epochs/0",
        {"attempt": 1, "stats": STATS | {"dead_dims": 10**30}},
        422,
        "dead_dims",
    ),
    (
        "hist shape",
        "PUT",
        "/epochs/0",
        {"attempt": 1, "stats": STATS | {"std_hist": {"edges": [0, 1], "counts": [1, 2]}}},
        422,
        "edges",
    ),
    ("unknown run", "PUT", "/epochs/0@404", {"attempt": 1}, 404, "does not exist"),
    ("declared huge body", "PUT", "/epochs/0", b"x" * (MIB + 1), 413, "larger than"),
    ("chunked huge body", "PUT", "/epochs/0", "chunked", 413, "larger than"),
    (
        "too many points",
        "POST",
        "/metrics",
        {"attempt": 1, "points": [{"key": "k", "step": i, "value": 1.0} for i in range(1001)]},
        422,
        "body.points",
    ),
    (
        "nan point",
        "POST",
        "/metrics",
        b'{"attempt": 1, "points": [{"key": "k", "step": 0, "value": NaN}]}',
        422,
        "finite",
    ),
    (
        "negative step",
        "POST",
        "/metrics",
        {"attempt": 1, "points": [{"key": "k", "step": -1, "value": 1}]},
        422,
        "step",
    ),
    (
        "huge step",
        "POST",
        "/metrics",
        {"attempt": 1, "points": [{"key": "k", "step": 2**60, "value": 1}]},
        422,
        "step",
    ),
    (
        "bad key",
        "POST",
        "/metrics",
        {"attempt": 1, "points": [{"key": "", "step": 0, "value": 1}]},
        422,
        "key",
    ),
    ("empty batch", "POST", "/metrics", {"attempt": 1, "points": []}, 422, "body.points"),
    (
        "string value",
        "POST",
        "/metrics",
        {"attempt": 1, "points": [{"key": "k", "step": 0, "value": "x"}]},
        422,
        "value",
    ),
    (
        "unknown run metrics",
        "POST",
        "/metrics@404",
        {"attempt": 1, "points": [{"key": "k", "step": 0, "value": 1}]},
        404,
        "does not exist",
    ),
    ("log line too long", "POST", "/logs", {"attempt": 1, "lines": ["x" * 10_001]}, 422, "at most 10000"),
    ("huge run id", "GET", "/epochs@huge", None, 422, "path.run_id"),
]


@pytest.mark.parametrize(
    ("method", "suffix", "body", "status", "needle"),
    [pytest.param(*case[1:], id=case[0]) for case in CASES],
)
def test_bad_input_when_sent_returns_clear_4xx_and_writes_nothing(
    api: Api, method: str, suffix: str, body: Any, status: int, needle: str
) -> None:
    run = api.sdk_run()
    before = _counts(api)
    path, _, special = suffix.partition("@")
    run_id = {"404": 999_999, "huge": 10**20}.get(special, run["id"])
    token = api.user if method == "GET" else api.worker
    kwargs: dict[str, Any] = {"headers": token | JSON}
    if body == "chunked":
        kwargs["content"] = _chunks(2 * MIB)
    elif isinstance(body, bytes):
        kwargs["content"] = body
    elif body is not None:
        kwargs["content"] = json.dumps(body)
    response = api.client.request(method, f"/api/v1/runs/{run_id}{path}", **kwargs)
    assert response.status_code == status, response.text
    assert needle in response.json()["message"], response.json()
    assert _counts(api) == before


def test_bad_input_when_validation_fails_lists_loc_and_msg_for_each_error(api: Api) -> None:
    run = api.sdk_run()
    body = {"attempt": -1, "metrics": {"ok": 1}, "stats": {"mean_sv": 1}}
    response = api.client.put(f"/api/v1/runs/{run['id']}/epochs/0", json=body, headers=api.worker)
    detail = response.json()["detail"]
    locs = {tuple(item["loc"]) for item in detail}
    assert ("body", "attempt") in locs and ("body", "stats", "sv_lower") in locs
    assert all(item["msg"] for item in detail)
