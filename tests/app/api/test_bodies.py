"""``app.api.bodies``: the server's cheaper shape of a metrics batch accepts and refuses exactly what the
public ``collapsewatch.contract.MetricBatchIn`` does, at the same places, with the same schema; the
metrics route answers a bad body with the public model's own errors and reads either shape."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError
from teamkit import Team, build_team

from app.api import bodies
from app.api import epochs as epochs_api
from app.main import create_app
from app.settings import Settings
from collapsewatch import contract

ANY_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=6,
)
KEYS = st.sampled_from(["loss", "val/acc", "_x", "", ".dot", "a b", "é", "k" * 128, "k" * 129])
STEPS = st.sampled_from([0, 1, -1, 2**53, 2**53 + 1, 1.0, 1.5, "3", True, None])
VALUES = st.sampled_from([0.5, -0.0, 1e308, 10**400, "1", "NaN", None, True, [1]])
WILD_POINT = st.fixed_dictionaries(
    {},
    optional={
        "key": KEYS | ANY_JSON,
        "step": STEPS | ANY_JSON,
        "value": VALUES | ANY_JSON,
        "extra": ANY_JSON,
    },
)
# mostly well-formed points with one field at a boundary, then anything
POINT = st.fixed_dictionaries({"key": KEYS, "step": STEPS, "value": VALUES}) | WILD_POINT | ANY_JSON
BATCH = st.fixed_dictionaries(
    {"attempt": st.sampled_from([1, 0, -1, 2, "1", 1.0, None]), "points": st.lists(POINT, max_size=3)}
) | st.fixed_dictionaries(
    {}, optional={"attempt": ANY_JSON, "points": st.lists(POINT, max_size=1002) | ANY_JSON, "more": ANY_JSON}
)


def _answer(model: type[BaseModel], document: Any) -> list[tuple[Any, ...]] | None:
    try:
        model.model_validate_json(json.dumps(document))
    except ValidationError as exc:
        return sorted((tuple(e["loc"]), e["msg"]) for e in exc.errors())
    return None


def _same_place(server: list[tuple[Any, ...]] | None, public: list[tuple[Any, ...]] | None) -> bool:
    if server is None or public is None:
        return server is public
    # a point that is not an object: "a valid dictionary" vs "... or instance of MetricPoint"
    return [loc for loc, _ in server] == [loc for loc, _ in public] and all(
        a == b or b.startswith(a) for (_, a), (_, b) in zip(server, public, strict=True)
    )


@pytest.fixture
def team(settings: Settings) -> Iterator[Team]:
    app = create_app(settings)
    with TestClient(app) as client:
        yield build_team(client, app.state.db, settings.admin_email)


def test_bodies_metric_batch_has_the_same_schema_as_the_public_model_but_for_names() -> None:
    def named_alike(model: type[BaseModel]) -> str:
        schema = model.model_json_schema()
        schema.pop("description")
        text = json.dumps(schema, sort_keys=True).replace("MetricPointRow", "MetricPoint")
        return text.replace("MetricBatchRows", "MetricBatchIn")

    assert named_alike(bodies.MetricBatchRows) == named_alike(contract.MetricBatchIn)


@settings(max_examples=400, deadline=None)
@given(document=BATCH)
def test_bodies_metric_batch_accepts_and_refuses_what_the_public_model_does(document: Any) -> None:
    server, public = _answer(bodies.MetricBatchRows, document), _answer(contract.MetricBatchIn, document)
    assert _same_place(server, public), (server, public)


def test_bodies_metric_batch_keeps_the_points_values() -> None:
    document = {
        "attempt": 2,
        "points": [{"key": "loss", "step": 3, "value": -0.0}, {"key": "a", "step": 0, "value": 1}],
    }
    parsed = bodies.MetricBatchRows.model_validate_json(json.dumps(document))
    public = contract.MetricBatchIn.model_validate_json(json.dumps(document))
    assert [dict(p) for p in parsed.points] == [p.model_dump() for p in public.points]
    assert [type(p["value"]) for p in parsed.points] == [float, float]


def test_bodies_metric_batch_refuses_more_than_the_maximum_points_as_the_public_model_does() -> None:
    point = {"key": "loss", "step": 1, "value": 0.5}
    for count, refused in ((contract.MAX_METRIC_POINTS, False), (contract.MAX_METRIC_POINTS + 1, True)):
        document = {"attempt": 1, "points": [point] * count}
        server, public = _answer(bodies.MetricBatchRows, document), _answer(contract.MetricBatchIn, document)
        assert server == public and (server is not None) is refused


def _sdk_run(team: Team) -> int:
    created = team.call("editor", "POST", "/api/v1/runs", json={"project": "team"})
    assert created.status_code == 201, created.text
    return int(created.json()["id"])


@pytest.mark.parametrize("point", ["abc", 1, None, [1], {"key": "loss", "step": 1}])
def test_metrics_route_answers_a_bad_point_with_the_public_models_error(team: Team, point: Any) -> None:
    run_id = _sdk_run(team)
    document = {"attempt": 1, "points": [point]}
    answer = team.call("editor", "POST", f"/api/v1/runs/{run_id}/metrics", json=document)
    assert answer.status_code == 422
    with pytest.raises(ValidationError) as public:  # as FastAPI validates a parsed body
        contract.MetricBatchIn.model_validate(document, from_attributes=True)
    expected = [(["body", *e["loc"]], e["type"], e["msg"]) for e in public.value.errors()]
    assert [(e["loc"], e["type"], e["msg"]) for e in answer.json()["detail"]] == expected


def test_metrics_route_reads_both_shapes(team: Team, monkeypatch: pytest.MonkeyPatch) -> None:
    """A plainly valid body arrives as dicts (``MetricBatchRows``); one FastAPI validated itself (here:
    sent chunked, without a Content-Length) as the public models. Both are stored alike."""
    run_id = _sdk_run(team)
    seen: list[type] = []
    real = epochs_api.metric_columns

    def spied(batch: Any) -> Any:
        seen.append(type(batch))
        return real(batch)

    monkeypatch.setattr(epochs_api, "metric_columns", spied)
    path = f"/api/v1/runs/{run_id}/metrics"
    first = {"attempt": 1, "points": [{"key": "loss", "step": s, "value": s / 2} for s in range(3)]}
    second = {"attempt": 1, "points": [{"key": "loss", "step": s, "value": -s} for s in range(3, 6)]}
    assert team.call("editor", "POST", path, json=first).json()["accepted"] == 3
    chunked = team.client.post(
        path, content=iter([json.dumps(second).encode()]),
        headers=team.headers("editor") | {"Content-Type": "application/json"},
    )  # fmt: skip
    assert chunked.status_code == 200 and chunked.json()["accepted"] == 3, chunked.text
    assert seen == [bodies.MetricBatchRows, contract.MetricBatchIn]
    series = team.call("editor", "GET", "/api/v1/series", params={"run": run_id, "key": "loss"}).json()
    stored = [(p["x"], p["y"]) for p in series[0]["points"]]
    assert stored == [(s, s / 2) for s in range(3)] + [(s, float(-s)) for s in range(3, 6)]
