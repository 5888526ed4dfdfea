"""Accounts: users created by an admin or by invitation, passwords (Argon2id via ``app.auth.sessions``),
password change, and the login throttle (failures stored in the database, so it holds across
processes and restarts)."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from app.auth.models import Invitation, LoginFailure
from app.auth.roles import RANK, Actor, Forbidden, effective_role
from app.auth.sessions import LoginLimiter, hash_password, verify_password
from app.db import Database
from app.errors import Conflict, DomainError, InvalidInput, NotFound
from app.models import Project, ProjectMember, User, utcnow

MIN_PASSWORD = 10
MAX_PASSWORD = 1024
MAX_FAILURES = 5
FAILURE_WINDOW = timedelta(minutes=15)
INVITE_TTL = timedelta(days=7)


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


def change_password(*, session: Session, user_id: int, current: str, new: str) -> None:
    """Set a new password after checking the current one (a user without one may set it)."""
    user = session.get(User, user_id)
    if user is None:
        raise NotFound(f"user {user_id} does not exist")
    if user.password_hash and not verify_password(user.password_hash, current):
        raise InvalidInput(["current_password"], "the current password is wrong")
    user.password_hash = hash_password(check_password(new, field="new_password"))
    session.flush()


class DbLoginLimiter(LoginLimiter):
    """At most ``max_failures`` failed sign-ins per account in ``window`` (rows in login_failures).

    Same interface as ``app.auth.sessions.LoginLimiter`` so the login page can use either.
    """

    def __init__(
        self, database: Database, max_failures: int = MAX_FAILURES, window: timedelta = FAILURE_WINDOW
    ) -> None:
        super().__init__(max_failures, window.total_seconds())
        self.database = database
        self.window = window

    def blocked(self, account: str) -> bool:
        with self.database.session(write=False) as session:
            count = session.scalar(
                select(func.count())
                .select_from(LoginFailure)
                .where(LoginFailure.account == _account(account))
                .where(LoginFailure.created_at > utcnow() - self.window)
            )
        return int(count or 0) >= self.max_failures

    def record_failure(self, account: str) -> None:
        now = utcnow()
        with self.database.transaction(write=True) as session:
            session.execute(delete(LoginFailure).where(LoginFailure.created_at < now - self.window))
            session.add(LoginFailure(account=_account(account), created_at=now))

    def reset(self, account: str) -> None:
        with self.database.transaction(write=True) as session:
            session.execute(delete(LoginFailure).where(LoginFailure.account == _account(account)))


def _account(account: str) -> str:
    return account.strip().lower()[:320]


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class NewInvitation:
    token: str
    invitation: Invitation


def create_invitation(
    *,
    session: Session,
    actor: Actor,
    email: str,
    project_id: int | None,
    role: str,
    ttl: timedelta = INVITE_TTL,
) -> NewInvitation:
    """An invite link for ``email``: to ``project_id`` with ``role`` (its owners or an admin), or
    to no project (admins only). The token is returned once; only its sha256 is stored."""
    if role not in RANK:
        raise InvalidInput(["role"], f"role must be one of viewer, editor, owner (got {role!r})")
    if project_id is None:
        if not actor.is_admin:
            raise Forbidden("only admins may invite someone without a project")
    else:
        if session.get(Project, project_id) is None:
            raise NotFound(f"project {project_id} does not exist")
        found = effective_role(session=session, actor=actor, project_id=project_id)
        if found is None:
            raise NotFound(f"project {project_id} does not exist")
        if found != "owner":
            raise Forbidden("only the project's owners may invite people")
    token = secrets.token_urlsafe(32)
    now = utcnow()
    invitation = Invitation(
        token_hash=_hash(token),
        email=normalize_email(email),
        project_id=project_id,
        role=role,
        invited_by=actor.user_id,
        created_at=now,
        expires_at=now + ttl,
    )
    session.add(invitation)
    session.flush()
    return NewInvitation(token, invitation)


def open_invitation(*, session: Session, token: str) -> Invitation:
    """The pending invitation for ``token``: NotFound (unknown or used) or Gone (expired)."""
    invitation = session.scalar(select(Invitation).where(Invitation.token_hash == _hash(token)))
    if invitation is None or invitation.accepted_at is not None:
        raise NotFound("this invitation does not exist or was already used")
    if invitation.expires_at <= utcnow():
        raise Gone("this invitation has expired; ask for a new one")
    return invitation


def accept_invitation(*, session: Session, token: str, password: str) -> User:
    """Create the invitee with ``password`` (an existing user keeps theirs) and add the membership."""
    invitation = open_invitation(session=session, token=token)
    user = find_user(session=session, email=invitation.email)
    if user is None:
        user = create_user(session=session, email=invitation.email, password=password)
    elif user.password_hash is None:
        user.password_hash = hash_password(check_password(password))
    if invitation.project_id is not None:
        member = session.get(ProjectMember, (invitation.project_id, user.id))
        if member is None:
            session.add(
                ProjectMember(
                    project_id=invitation.project_id,
                    user_id=user.id,
                    role=invitation.role,
                    created_at=utcnow(),
                )
            )
        elif RANK[invitation.role] > RANK.get(member.role, 0):
            member.role = invitation.role
    invitation.accepted_at = utcnow()
    session.flush()
    return user
