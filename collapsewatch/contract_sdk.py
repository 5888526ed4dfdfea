"""Wire shapes of the SDK-only routes (DESIGN.md §5 lists the core ones in :mod:`collapsewatch.contract`;
these live apart to keep that module small). Pydantic only, like the contract."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class ConfigUpdateIn(BaseModel):
    """``POST /api/v1/runs/{id}/config``: keys merged into an SDK run's config, like W&B's
    ``run.config.update`` (Lightning reports hyperparameters after the run exists). Idempotent."""

    model_config = ConfigDict(extra="forbid")

    attempt: int = Field(..., ge=1)
    config: dict[str, Any] = Field(..., max_length=1000)
