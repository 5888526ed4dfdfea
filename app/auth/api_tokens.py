"""Users (the local admin for now) and API tokens."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from app.auth.token_cache import forget_all
from app.auth.tokens import Principal, PrincipalKind, display_prefix, generate_token, hash_token
from app.models import ApiToken, User, utcnow

TOKEN_KINDS = ("user", "worker")
LAST_USED_RESOLUTION = timedelta(seconds=60)


@dataclass(frozen=True)
class NewToken:
    token: str
    record: ApiToken


def ensure_admin(*, session: Session, email: str) -> User:
    """The local admin user, created on first use."""
    user = session.scalar(select(User).where(User.email == email))
    if user is None:
        user = User(email=email, is_admin=True)
        session.add(user)
        session.flush()
    return user


def create_token(*, session: Session, user: User, name: str, kind: str = "user") -> NewToken:
    if kind not in TOKEN_KINDS:
        raise ValueError(f"kind must be one of {TOKEN_KINDS}, not {kind!r}")
    token = generate_token()
    record = ApiToken(
        user_id=user.id, name=name, kind=kind, prefix=display_prefix(token), token_hash=hash_token(token)
    )
    session.add(record)
    session.flush()
    return NewToken(token=token, record=record)


@dataclass(frozen=True)
class ResolvedToken:
    principal: Principal
    needs_touch: bool
    touch_due_in_s: float = 0.0  # until ``last_used_at`` is due again (``app.auth.token_cache``)


def resolve_token(*, session: Session, token: str) -> ResolvedToken | None:
    """The principal for a presented bearer token, or None (unknown or revoked)."""
    row = session.execute(
        select(ApiToken, User.is_admin)
        .join(User, User.id == ApiToken.user_id)
        .where(ApiToken.token_hash == hash_token(token), ApiToken.revoked_at.is_(None))
    ).first()
    if row is None:
        return None
    record, is_admin = row
    kind: PrincipalKind = "worker" if record.kind == "worker" else "user"
    principal = Principal(user_id=record.user_id, kind=kind, is_admin=is_admin, token_id=record.id)
    last = record.last_used_at
    due_in = 0.0 if last is None else (last + LAST_USED_RESOLUTION - utcnow()).total_seconds()
    return ResolvedToken(principal, needs_touch=due_in <= 0, touch_due_in_s=max(0.0, due_in))


def touch_token(*, session: Session, token_id: int) -> None:
    """Record use, at most once a minute per token (keeps reads from turning into writes)."""
    now = utcnow()
    session.execute(
        update(ApiToken)
        .where(ApiToken.id == token_id)
        .where((ApiToken.last_used_at.is_(None)) | (ApiToken.last_used_at < now - LAST_USED_RESOLUTION))
        .values(last_used_at=now)
    )


def revoke_token(*, session: Session, token_id: int) -> bool:
    forget_all(session)  # cached tokens of this process are looked up again, now and at the commit
    result = session.execute(
        update(ApiToken)
        .where(ApiToken.id == token_id, ApiToken.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )
    return bool(getattr(result, "rowcount", 0))
