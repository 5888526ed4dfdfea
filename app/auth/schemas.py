"""The account API's own bodies: who am I, tokens, projects, members, invitations."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

ProjectRole = Literal["viewer", "editor", "owner"]


class MePublic(BaseModel):
    id: int
    email: str
    is_admin: bool


class TokenCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(..., min_length=1, max_length=200)


class TokenPublic(BaseModel):
    """A token as listed: never the secret, only its first characters (``prefix``)."""

    id: int
    name: str
    kind: Literal["user", "worker"]
    prefix: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None
    projects: list[str] = Field(
        default_factory=list, description="worker tokens: the projects it may ingest into"
    )


class TokenCreated(TokenPublic):
    token: str = Field(..., description="the secret; shown only in this response")


class ProjectCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(..., min_length=1, max_length=64)


class ProjectPublic(BaseModel):
    id: int
    name: str
    role: ProjectRole


class MemberSet(BaseModel):
    model_config = ConfigDict(extra="forbid")

    email: str = Field(..., min_length=3, max_length=320)
    role: ProjectRole


class MemberPublic(BaseModel):
    user_id: int
    email: str
    role: ProjectRole


class InvitationCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    email: str = Field(..., min_length=3, max_length=320)
    role: ProjectRole = "viewer"


class InvitationPublic(BaseModel):
    email: str
    role: ProjectRole
    expires_at: datetime
    url: str = Field(..., description="the invite link; shown only in this response")
