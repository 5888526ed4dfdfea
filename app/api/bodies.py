"""Request bodies that the server validates in a cheaper shape than the public library's models.

``collapsewatch.contract.MetricBatchIn`` holds its points as ``MetricPoint`` models, which SDK users
build. Validating a 1,000-point batch into 1,000 model objects was a sixth of the server's time for a
metrics POST (issue 19). :class:`MetricBatchRows` is the same batch with its points as plain dicts (a
``TypedDict``: the same keys, constraints and refusals of unknown keys) for half the validation time.

The route still declares the public model, so ``/openapi.json`` and every 422 (FastAPI validates a
body that is not plainly valid with the declared model) stay exactly as they were;
``app.api.fast_body`` parses a plainly valid body into the cheaper shape (:data:`FASTER`), a subclass
of the declared model, which FastAPI hands to the route unchanged. A route therefore gets either
shape: :func:`metric_columns` reads both. ``tests/app/api/test_bodies.py`` holds the two shapes to
the same schema and the same answers.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field
from typing_extensions import TypedDict

from collapsewatch.contract import KEY_PATTERN, MAX_METRIC_POINTS, MetricBatchIn


class MetricPointRow(TypedDict):
    __pydantic_config__ = ConfigDict(extra="forbid")  # type: ignore[misc]

    key: Annotated[str, Field(pattern=KEY_PATTERN)]
    step: Annotated[int, Field(ge=0, le=2**53)]
    value: Annotated[float, Field(allow_inf_nan=False)]


class MetricBatchRows(MetricBatchIn):
    """``MetricBatchIn`` with its points as dicts."""

    points: list[MetricPointRow] = Field(..., min_length=1, max_length=MAX_METRIC_POINTS)  # type: ignore[assignment]


# declared body model -> the cheaper subclass that app.api.fast_body parses a valid body into
FASTER: dict[type[BaseModel], type[BaseModel]] = {MetricBatchIn: MetricBatchRows}

# Bodies that, once valid, hold nothing the input guard refuses (app.web.input_guard): their only
# number fields refuse non-finite values, their only strings match KEY_PATTERN (ASCII), every object
# refuses unknown keys, and they nest three levels deep. ``app.api.fast_body`` validates them without
# the guard's byte scans first (0.3 ms of a 1,000-point batch); tests/app/api/test_fast_body.py
# throws the guard's hostile inputs at them.
SELF_GUARDED: frozenset[type[BaseModel]] = frozenset({MetricBatchRows})


def metric_columns(batch: MetricBatchIn) -> tuple[list[str], list[int], list[float]]:
    """The batch's keys, steps and values, from either shape."""
    if isinstance(batch, MetricBatchRows):
        rows = batch.points
        return [p["key"] for p in rows], [p["step"] for p in rows], [p["value"] for p in rows]
    points = batch.points
    return [p.key for p in points], [p.step for p in points], [p.value for p in points]
