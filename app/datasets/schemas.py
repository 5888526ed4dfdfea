"""Wire schemas of the datasets API (named by direction, DESIGN.md §7)."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

PROJECT_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$"
ROOT_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")
MAX_REFERENCE = 1024
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def check_name(value: str) -> str:
    """A dataset's display name: 1-200 characters, no control characters."""
    name = value.strip()
    if not name or len(name) > 200 or _CONTROL.search(name):
        raise ValueError("give 1-200 characters without control characters")
    return name


def check_reference(value: str) -> str:
    """``root-name/relative/path.npz``: a data root's name, then a relative path without ``.``, ``..``
    or empty parts, backslashes or control characters, ending in ``.npz``. Only the syntax is checked
    here: the server never looks at worker files; the worker resolves it under its own root."""
    root, sep, rest = value.partition("/")
    allowed = (
        "root-name/relative/path.npz: a data root configured on the workers (COLLAPSEWATCH_DATA_ROOTS), "
        "then a path inside it"
    )
    if not sep or not ROOT_PATTERN.match(root):
        raise ValueError(f"must look like {allowed}")
    parts = rest.split("/")
    bad = (
        len(value) > MAX_REFERENCE
        or _CONTROL.search(value)
        or "\\" in value
        or any(part in ("", ".", "..") for part in parts)
        or not rest.endswith(".npz")
    )
    if bad:
        raise ValueError(
            f"must look like {allowed} (no '.', '..' or empty parts, at most {MAX_REFERENCE} chars)"
        )
    return value


class DatasetReferenceIn(BaseModel):
    """``POST /api/v1/dataset-references``: a file too big to upload, under a worker data root."""

    model_config = ConfigDict(extra="forbid")

    project: str = Field(..., pattern=PROJECT_PATTERN)
    name: str = Field(..., min_length=1, max_length=200)
    reference: str = Field(..., max_length=MAX_REFERENCE, description="root-name/relative/path.npz")
    sha256: str = Field(
        ..., pattern=r"^[0-9a-fA-F]{64}$", description="the file's sha256 (hex); workers refuse other content"
    )
    size_bytes: int | None = Field(None, ge=0, le=2**62)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return check_name(value)

    @field_validator("reference")
    @classmethod
    def _reference(cls, value: str) -> str:
        return check_reference(value)

    @field_validator("sha256")
    @classmethod
    def _lower(cls, value: str) -> str:
        return value.lower()


class DatasetPublic(BaseModel):
    id: int
    project: str
    name: str
    kind: Literal["upload", "reference"]
    sha256: str
    size_bytes: int | None
    reference: str | None = Field(None, description="root-name/relative/path (kind reference)")
    rows: int | None = None
    x_shape: list[int] | None = Field(None, description="per-row shape of x (uploads)")
    x_dtype: str | None = None
    classes: int | None = None
    created_at: datetime
