"""Request bodies that the server validates in a cheaper shape than the public library's models.

``collapsewatch.contract.MetricBatchIn`` holds its points as ``MetricPoint`` models, which SDK users
build. Validating a 1,000-point batch into 1,000 model objects was a sixth of the server's time for a
metrics POST (issue 19); here the points are plain dicts (a ``TypedDict``): the same keys, constraints,
refusals of unknown keys and error locations, and the same names in ``/openapi.json``, for half the
validation time. ``tests/app/api/test_bodies.py`` holds the two shapes to the same JSON schema and
the same answers.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field
from typing_extensions import TypedDict

from collapsewatch.contract import KEY_PATTERN, MAX_METRIC_POINTS


class MetricPoint(TypedDict):
    __pydantic_config__ = ConfigDict(extra="forbid")  # type: ignore[misc]

    key: Annotated[str, Field(pattern=KEY_PATTERN)]
    step: Annotated[int, Field(ge=0, le=2**53)]
    value: Annotated[float, Field(allow_inf_nan=False)]


class MetricBatchIn(BaseModel):
    """``POST /api/v1/runs/{id}/metrics``: at most 1000 points per call."""

    model_config = ConfigDict(extra="forbid")

    attempt: int = Field(..., ge=1)
    points: list[MetricPoint] = Field(..., min_length=1, max_length=MAX_METRIC_POINTS)
