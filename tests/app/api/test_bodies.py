"""``app.api.bodies``: the server's cheaper shape of a metrics batch accepts and refuses exactly what the
public ``collapsewatch.contract.MetricBatchIn`` does, at the same places, and documents the same schema."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from app.api import bodies
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


def test_bodies_metric_batch_documents_the_same_schema_as_the_public_model() -> None:
    assert bodies.MetricBatchIn.model_json_schema() == contract.MetricBatchIn.model_json_schema()


@settings(max_examples=400, deadline=None)
@given(document=BATCH)
def test_bodies_metric_batch_accepts_and_refuses_what_the_public_model_does(document: Any) -> None:
    server, public = _answer(bodies.MetricBatchIn, document), _answer(contract.MetricBatchIn, document)
    assert _same_place(server, public), (server, public)


def test_bodies_metric_batch_keeps_the_points_values() -> None:
    document = {
        "attempt": 2,
        "points": [{"key": "loss", "step": 3, "value": -0.0}, {"key": "a", "step": 0, "value": 1}],
    }
    parsed = bodies.MetricBatchIn.model_validate_json(json.dumps(document))
    public = contract.MetricBatchIn.model_validate_json(json.dumps(document))
    assert [dict(p) for p in parsed.points] == [p.model_dump() for p in public.points]
    assert [type(p["value"]) for p in parsed.points] == [float, float]


def test_bodies_metric_batch_refuses_more_than_the_maximum_points_as_the_public_model_does() -> None:
    point = {"key": "loss", "step": 1, "value": 0.5}
    for count, refused in ((contract.MAX_METRIC_POINTS, False), (contract.MAX_METRIC_POINTS + 1, True)):
        document = {"attempt": 1, "points": [point] * count}
        server, public = _answer(bodies.MetricBatchIn, document), _answer(contract.MetricBatchIn, document)
        assert server == public and (server is not None) is refused
