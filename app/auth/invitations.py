"""Invitations: an owner's link that lets someone join a project (DESIGN.md §6).

An invitation never authenticates as, and never changes, an existing account:

- for an email without an account, the link holder creates that account (choosing its password)
  and is signed in as it: :func:`accept_as_new_account`;
- for an email that has an account, or the local admin's email (``Settings.admin_email``) whether
  or not that account exists yet, the link only adds the membership, and only once that account
  has signed in with its own credentials: :func:`accept_as_member`. Nothing else about the account
  (its password, its sessions, its tokens) is touched;
- the local admin's email cannot be invited at all (:func:`create_invitation` refuses it).

Only the sha256 of a link's token is stored; the token is shown once.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from app.auth.accounts import Gone, create_user_hashed, find_user, normalize_email
from app.auth.models import Invitation
from app.auth.roles import RANK, Actor, Forbidden, effective_role
from app.errors import Conflict, InvalidInput, NotFound
from app.models import Project, ProjectMember, User, utcnow

INVITE_TTL = timedelta(days=7)
EXISTING_ACCOUNT = (
    "this invitation is for an existing account: sign in as {email} with its own password to accept it"
)


@dataclass(frozen=True)
class NewInvitation:
    token: str
    invitation: Invitation


@dataclass(frozen=True)
class OpenInvitation:
    """A pending invitation and whether its email already belongs to an account (or the local admin)."""

    invitation: Invitation
    existing_account: bool


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _is_local_admin(email: str, local_admin_email: str) -> bool:
    return email == local_admin_email.strip().lower()


def create_invitation(
    *,
    session: Session,
    actor: Actor,
    email: str,
    project_id: int | None,
    role: str,
    local_admin_email: str,
    ttl: timedelta = INVITE_TTL,
) -> NewInvitation:
    """An invite link for ``email``: to ``project_id`` with ``role`` (its owners or an admin), or
    to no project (admins only). The local admin's email is refused. The token is returned once."""
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
    address = normalize_email(email)
    if _is_local_admin(address, local_admin_email):
        raise InvalidInput(
            ["email"], "the local admin's address cannot be invited; invite a person's own email"
        )
    token = secrets.token_urlsafe(32)
    now = utcnow()
    invitation = Invitation(
        token_hash=_hash(token),
        email=address,
        project_id=project_id,
        role=role,
        invited_by=actor.user_id,
        created_at=now,
        expires_at=now + ttl,
    )
    session.add(invitation)
    session.flush()
    return NewInvitation(token, invitation)


def open_invitation(*, session: Session, token: str, local_admin_email: str) -> OpenInvitation:
    """The pending invitation for ``token``: NotFound (unknown or used) or Gone (expired)."""
    if not token or len(token) > 200:
        raise NotFound("this invitation does not exist or was already used")
    invitation = session.scalar(select(Invitation).where(Invitation.token_hash == _hash(token)))
    if invitation is None or invitation.accepted_at is not None:
        raise NotFound("this invitation does not exist or was already used")
    if invitation.expires_at <= utcnow():
        raise Gone("this invitation has expired; ask for a new one")
    existing = _is_local_admin(invitation.email, local_admin_email) or (
        find_user(session=session, email=invitation.email) is not None
    )
    return OpenInvitation(invitation, existing)


def accept_as_new_account(
    *, session: Session, token: str, password_hash: str, local_admin_email: str
) -> User:
    """Create the invitee's account with ``password_hash`` (hashed by the caller, outside the
    transaction) and add the membership. Conflict when the email already has an account or is the
    local admin's: that account accepts by signing in (:func:`accept_as_member`)."""
    pending = open_invitation(session=session, token=token, local_admin_email=local_admin_email)
    if pending.existing_account:
        raise Conflict(EXISTING_ACCOUNT.format(email=pending.invitation.email))
    _claim(session=session, invitation=pending.invitation)
    user = create_user_hashed(session=session, email=pending.invitation.email, password_hash=password_hash)
    _grant(session=session, invitation=pending.invitation, user_id=user.id)
    return user


def accept_as_member(*, session: Session, token: str, user_id: int, local_admin_email: str) -> Invitation:
    """The signed-in account ``user_id`` accepts an invitation addressed to its own email.

    Forbidden when the invitation is for another email; nothing about the account changes except
    the membership the invitation grants."""
    pending = open_invitation(session=session, token=token, local_admin_email=local_admin_email)
    user = session.get(User, user_id)
    if user is None or normalize_email(user.email) != pending.invitation.email:
        raise Forbidden(
            f"this invitation is for {pending.invitation.email}; sign out and sign in as that account"
        )
    _claim(session=session, invitation=pending.invitation)
    _grant(session=session, invitation=pending.invitation, user_id=user.id)
    return pending.invitation


def _claim(*, session: Session, invitation: Invitation) -> None:
    """Mark the invitation used, once: of two concurrent acceptances the second finds it used."""
    claimed = session.execute(
        update(Invitation)
        .where(Invitation.id == invitation.id, Invitation.accepted_at.is_(None))
        .values(accepted_at=utcnow())
    )
    if getattr(claimed, "rowcount", 1) != 1:
        raise NotFound("this invitation does not exist or was already used")


def _grant(*, session: Session, invitation: Invitation, user_id: int) -> None:
    """Add the membership (or raise the role, never lower it)."""
    if invitation.project_id is not None:
        member = session.get(ProjectMember, (invitation.project_id, user_id))
        if member is None:
            session.add(
                ProjectMember(
                    project_id=invitation.project_id,
                    user_id=user_id,
                    role=invitation.role,
                    created_at=utcnow(),
                )
            )
        elif RANK[invitation.role] > RANK.get(member.role, 0):
            member.role = invitation.role
    session.flush()
