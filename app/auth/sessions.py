"""Browser sessions: a random cookie whose sha256 is stored in ``web_sessions``, plus CSRF tokens.

- The cookie (``cw_session``, HttpOnly, SameSite=Lax) holds 32 random bytes; the database keeps only
  the sha256, so a leaked database does not leak live sessions.
- The CSRF token of a session is HMAC-SHA256(secret key, session hash): nothing extra to store, and
  every form post (and every unsafe API call authenticated by the cookie) must carry it.
- Passwords are Argon2id (argon2-cffi); failed logins are rate-limited per account.
- Local mode (``Settings.autologin``): a browser without a session becomes the local admin.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from datetime import UTC, datetime, timedelta

from sqlalchemy import ForeignKey, Integer, String, delete, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from app.models import Base, User, utcnow

SESSION_COOKIE = "cw_session"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
SESSION_TTL = timedelta(days=14)


class WebSession(Base):
    """A signed-in browser. ``token_hash`` is the sha256 of the cookie value."""

    __tablename__ = "web_sessions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def create_session(*, session: Session, user_id: int, ttl: timedelta = SESSION_TTL) -> str:
    """Store a new browser session for ``user_id``; returns the cookie value (shown only here)."""
    token = secrets.token_urlsafe(32)
    session.add(WebSession(token_hash=_hash(token), user_id=user_id, expires_at=utcnow() + ttl))
    session.flush()
    return token


def resolve_session(*, session: Session, token: str | None) -> User | None:
    """The user behind a cookie value, or None for a missing, unknown or expired session."""
    if not token or len(token) > 256:
        return None
    row = session.execute(
        select(User, WebSession.expires_at)
        .join(WebSession, WebSession.user_id == User.id)
        .where(WebSession.token_hash == _hash(token))
    ).first()
    if row is None or row[1] <= datetime.now(UTC):
        return None
    return row[0]


def end_session(*, session: Session, token: str | None) -> None:
    """Sign one browser out: its session row goes, so the cookie is refused from now on."""
    if token:
        session.execute(delete(WebSession).where(WebSession.token_hash == _hash(token)))


def end_user_sessions(*, session: Session, user_id: int, keep_token: str | None = None) -> int:
    """End every browser session of ``user_id`` except the one whose cookie is ``keep_token``."""
    stmt = delete(WebSession).where(WebSession.user_id == user_id)
    if keep_token:
        stmt = stmt.where(WebSession.token_hash != _hash(keep_token))
    result = session.execute(stmt)
    return int(getattr(result, "rowcount", 0) or 0)


def csrf_token(secret_key: str, session_token: str) -> str:
    """The CSRF token for a session cookie value (deterministic; rotates with the session)."""
    return hmac.new(secret_key.encode(), b"csrf:" + _hash(session_token).encode(), "sha256").hexdigest()


def csrf_valid(secret_key: str, session_token: str | None, submitted: str | None) -> bool:
    if not session_token or not submitted:
        return False
    return hmac.compare_digest(csrf_token(secret_key, session_token), submitted)


def hash_password(password: str) -> str:
    from argon2 import PasswordHasher

    return PasswordHasher().hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    from argon2 import PasswordHasher
    from argon2.exceptions import InvalidHashError, VerificationError

    if not password_hash:
        return False
    try:
        return PasswordHasher().verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


class LoginLimiter:
    """At most ``max_failures`` failed logins per account in a sliding ``window_s`` (per process)."""

    def __init__(self, max_failures: int = 5, window_s: float = 300.0) -> None:
        self.max_failures = max_failures
        self.window_s = window_s
        self._failures: dict[str, list[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, account: str, now: float) -> list[float]:
        kept = [t for t in self._failures.get(account, []) if now - t < self.window_s]
        self._failures[account] = kept
        return kept

    def blocked(self, account: str) -> bool:
        with self._lock:
            return len(self._recent(account.lower(), time.monotonic())) >= self.max_failures

    def record_failure(self, account: str) -> None:
        with self._lock:
            now = time.monotonic()
            self._recent(account.lower(), now).append(now)

    def reset(self, account: str) -> None:
        with self._lock:
            self._failures.pop(account.lower(), None)


def local_admin(*, session: Session, email: str) -> User:
    """The local admin (created on first use) that local mode signs browsers in as."""
    user = session.scalars(select(User).where(User.email == email)).first()
    if user is None:
        user = User(email=email, is_admin=True)
        session.add(user)
        session.flush()
    return user
