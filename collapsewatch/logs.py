"""Worker / SDK log lines on the wire (``POST`` and ``GET /api/v1/runs/{id}/logs``); re-exported by
:mod:`collapsewatch.contract`."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, field_validator


class LogBatchIn(BaseModel):
    """``POST /api/v1/runs/{id}/logs``: worker / SDK log lines."""

    model_config = ConfigDict(extra="forbid")

    attempt: int = Field(..., ge=1)
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
