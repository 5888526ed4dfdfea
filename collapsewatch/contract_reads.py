"""Wire models of the server's answers about series and log lines, and the log batch body
(re-exported by :mod:`collapsewatch.contract`)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = [
    "MAX_ATTEMPT",
    "Attempt",
    "LogBatchIn",
    "LogLinePublic",
    "MetricBatchPublic",
    "SeriesPoint",
    "SeriesPublic",
]

MAX_ATTEMPT = 2**31 - 1  # attempts are 32-bit integers in the database
# a writer's attempt (fencing): beyond MAX_ATTEMPT it is bad input (422) on every backend, not a stale
# attempt (409) on one and a database error on another
Attempt = Annotated[int, Field(ge=1, le=MAX_ATTEMPT)]


class SeriesPoint(BaseModel):
    x: int
    y: float | None
    y_min: float | None = None
    y_max: float | None = None


class SeriesPublic(BaseModel):
    run: int
    key: str
    points: list[SeriesPoint]
    total: int
    source: Literal["epoch", "metric"] | None = Field(
        None, description="where the key was found: epoch records (x = epoch) or SDK scalars (x = step)"
    )


class MetricBatchPublic(BaseModel):
    run: int
    accepted: int = Field(..., description="points stored (a repeated (key, step) in one batch counts once)")


class LogBatchIn(BaseModel):
    """``POST /api/v1/runs/{id}/logs``: worker / SDK log lines."""

    model_config = ConfigDict(extra="forbid")

    attempt: Attempt
    lines: list[str] = Field(..., min_length=1, max_length=1000)

    @field_validator("lines")
    @classmethod
    def _line_length(cls, value: list[str]) -> list[str]:
        for i, line in enumerate(value):
            if len(line) > 10_000:
                raise ValueError(f"lines[{i}] has {len(line)} characters; at most 10000 per line")
        return value


class LogLinePublic(BaseModel):
    id: int
    attempt: int
    line: str
    created_at: datetime
