"""Bearer tokens: ``cw_`` + 32 random bytes, stored as sha256, shown once."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from typing import Literal

TOKEN_PREFIX = "cw_"
PrincipalKind = Literal["user", "worker", "session"]


@dataclass(frozen=True)
class Principal:
    """Who is calling: resolved once per request by ``app.deps.principal``."""

    user_id: int
    kind: PrincipalKind
    is_admin: bool = False
    token_id: int | None = None

    @property
    def is_worker(self) -> bool:
        return self.kind == "worker"


def generate_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def display_prefix(token: str) -> str:
    return token[:10]
