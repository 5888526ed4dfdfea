"""Accounts: users created by an admin or by invitation (``app.auth.invitations``), passwords
(Argon2id via ``app.auth.sessions``), password change (which ends the account's other sessions),
and the login throttle (failures stored in the database, so it holds across processes and restarts).

Argon2id is slow on purpose, so the callers hash and verify outside their write transaction
(:func:`new_password_hash`, :func:`create_user_hashed`)."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from app.auth.models import LoginFailure
from app.auth.sessions import end_user_sessions, hash_password, verify_password
from app.errors import Conflict, DomainError, InvalidInput
from app.models import User, utcnow

MIN_PASSWORD = 10
MAX_PASSWORD = 1024
MAX_FAILURES = 5
FAILURE_WINDOW = timedelta(minutes=15)


class Gone(DomainError):
    status_code = 410


def normalize_email(email: str, *, field: str = "email") -> str:
    value = email.strip().lower()
    local, at, domain = value.partition("@")
    if not at or not local or not domain or len(value) > 320 or any(c.isspace() for c in value):
        raise InvalidInput([field], f"{email!r} is not an email address (name@host)")
    return value


def check_password(password: str, *, field: str = "password") -> str:
    if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise InvalidInput([field], f"a password needs {MIN_PASSWORD} to {MAX_PASSWORD} characters")
    return password


def find_user(*, session: Session, email: str) -> User | None:
    return session.scalar(select(User).where(func.lower(User.email) == email.strip().lower()))


def create_user(*, session: Session, email: str, password: str | None, is_admin: bool = False) -> User:
    """A new user (Conflict if the email is taken); ``password`` None: cannot sign in yet."""
    address = normalize_email(email)
    if find_user(session=session, email=address) is not None:
        raise Conflict(f"a user with email {address!r} already exists")
    user = User(email=address, is_admin=is_admin, created_at=utcnow())
    if password is not None:
        user.password_hash = hash_password(check_password(password))
    session.add(user)
    session.flush()
    return user


def create_user_hashed(*, session: Session, email: str, password_hash: str) -> User:
    """A new user whose password was hashed by the caller (outside the transaction: Argon2id takes
    tens of milliseconds, and on SQLite a write transaction holds the database's one write lock)."""
    address = normalize_email(email)
    if find_user(session=session, email=address) is not None:
        raise Conflict(f"a user with email {address!r} already exists")
    user = User(email=address, password_hash=password_hash, is_admin=False, created_at=utcnow())
    session.add(user)
    session.flush()
    return user


def new_password_hash(*, current_hash: str | None, current: str, new: str) -> str:
    """The hash of ``new`` once ``current`` matches ``current_hash``. Pure CPU (no session): call it
    outside any transaction. An account without a password cannot be given one here (the local
    admin of the embedded set-up has none, and no form may claim it)."""
    if not current_hash:
        raise InvalidInput(
            ["current_password"],
            "this account has no password and cannot get one from a form; "
            "create a personal account with `collapsewatch user create EMAIL --password-stdin`",
        )
    if not verify_password(current_hash, current):
        raise InvalidInput(["current_password"], "the current password is wrong")
    return hash_password(check_password(new, field="new_password"))


def set_password_hash(
    *, session: Session, user_id: int, expected_hash: str, new_hash: str, keep_session: str | None
) -> int:
    """Replace the password (only if it is still ``expected_hash``) and end every other browser
    session of the account (``keep_session``: the cookie value of the one that asked). Returns how
    many sessions ended. One statement each, in the caller's one write transaction."""
    changed = session.execute(
        update(User)
        .where(User.id == user_id, User.password_hash == expected_hash)
        .values(password_hash=new_hash)
        .execution_options(synchronize_session=False)
    )
    if getattr(changed, "rowcount", 1) != 1:
        raise Conflict("the password was changed meanwhile; reload the page and try again")
    return end_user_sessions(session=session, user_id=user_id, keep_token=keep_session)


# Login throttle: failures are rows, so every server process counts the same ones. The functions
# take the request's session; the login page reads in one session and writes in one transaction.


def login_blocked(
    *, session: Session, account: str, max_failures: int = MAX_FAILURES, window: timedelta = FAILURE_WINDOW
) -> bool:
    """Whether ``account`` had ``max_failures`` failed sign-ins within ``window``."""
    count = session.scalar(
        select(func.count())
        .select_from(LoginFailure)
        .where(LoginFailure.account == _account(account))
        .where(LoginFailure.created_at > utcnow() - window)
    )
    return int(count or 0) >= max_failures


def record_login_failure(*, session: Session, account: str, window: timedelta = FAILURE_WINDOW) -> None:
    now = utcnow()
    session.execute(delete(LoginFailure).where(LoginFailure.created_at < now - window))
    session.add(LoginFailure(account=_account(account), created_at=now))
    session.flush()


def clear_login_failures(*, session: Session, account: str) -> None:
    session.execute(delete(LoginFailure).where(LoginFailure.account == _account(account)))


def _account(account: str) -> str:
    return account.strip().lower()[:320]
