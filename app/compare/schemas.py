"""The report API's own bodies: reports and their share links."""

from __future__ import annotations

from datetime import datetime

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field


class ReportCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    project: str = Field(..., min_length=1, max_length=64)
    title: str = Field(..., min_length=1, max_length=200)
    notes: str = Field("", max_length=50_000, description="Markdown (sanitised when shown)")
    pinned: bool = Field(True, description="keep the data as saved (true) or re-query on every view")
    query: str = Field(..., max_length=10_000, description="the compare page's query string")


class ReportPublic(BaseModel):
    id: int
    project: str
    title: str
    pinned: bool
    created_at: datetime
    url: str


class ShareCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    expires_at: AwareDatetime | None = Field(None, description="with a timezone; none = never expires")
    label: str = Field("", max_length=200)


class SharePublic(BaseModel):
    id: int
    label: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None


class ShareCreated(SharePublic):
    url: str = Field(..., description="the read-only link; shown only in this response")
