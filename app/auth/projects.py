"""Projects, their members and tokens: listing, creating, role changes (owners), personal API
tokens (every user) and project worker tokens (owners). Permission checks are ``app.auth.roles``'s."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.auth import token_cache
from app.auth.api_tokens import NewToken, create_token, revoke_token
from app.auth.models import TokenProject
from app.auth.roles import RANK, Actor, check, effective_role, name_taken, visible_project_ids
from app.errors import Conflict, InvalidInput, NotFound
from app.models import ApiToken, Project, ProjectMember, User, utcnow

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


@dataclass(frozen=True)
class ProjectRow:
    id: int
    name: str
    role: str


@dataclass(frozen=True)
class MemberRow:
    user_id: int
    email: str
    role: str


@dataclass(frozen=True)
class TokenRow:
    id: int
    name: str
    kind: str
    prefix: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None
    projects: list[str]


def my_projects(*, session: Session, actor: Actor) -> list[ProjectRow]:
    """Projects the actor may read, with the actor's role (admins: every project, as owner)."""
    visible = visible_project_ids(session=session, actor=actor)
    stmt = select(Project).order_by(Project.name)
    if visible is not None:
        stmt = stmt.where(Project.id.in_(visible))
    rows = []
    for project in session.scalars(stmt):
        role = effective_role(session=session, actor=actor, project_id=project.id)
        if role is not None:
            rows.append(ProjectRow(project.id, project.name, role))
    return rows


def create_project(*, session: Session, actor: Actor, name: str) -> Project:
    if not NAME_PATTERN.match(name):
        raise InvalidInput(["name"], "1-64 letters, digits, '.', '_' or '-', starting with a letter or digit")
    if session.scalar(select(Project.id).where(Project.name == name)) is not None:
        raise name_taken(name)
    project = Project(name=name, created_at=utcnow())
    session.add(project)
    session.flush()
    session.add(
        ProjectMember(project_id=project.id, user_id=actor.user_id, role="owner", created_at=utcnow())
    )
    session.flush()
    return project


def members(*, session: Session, project_id: int) -> list[MemberRow]:
    rows = session.execute(
        select(ProjectMember.user_id, User.email, ProjectMember.role)
        .join(User, User.id == ProjectMember.user_id)
        .where(ProjectMember.project_id == project_id)
        .order_by(User.email)
    )
    return [MemberRow(user_id, email, role) for user_id, email, role in rows]


def _owners(*, session: Session, project_id: int) -> int:
    stmt = select(func.count()).where(ProjectMember.project_id == project_id, ProjectMember.role == "owner")
    return int(session.scalar(stmt) or 0)


def set_member(*, session: Session, actor: Actor, project_id: int, email: str, role: str) -> MemberRow:
    """Change a member's role (owners only; the last owner stays an owner), or add an existing user
    (the server's admin only).

    An owner does not add people without their consent: project names are global and the SDK logs
    to "default" unless told otherwise, so an account that named its project "default" and added
    others would receive their runs. Owners invite instead (``app.auth.invitations``): the invitee
    joins by accepting with their own account."""
    _lock_members(session, project_id)
    check(
        session=session,
        actor=actor,
        project_id=project_id,
        action="manage",
        missing=f"project {project_id} does not exist",
    )
    if role not in RANK:
        raise InvalidInput(["role"], f"role must be one of viewer, editor, owner (got {role!r})")
    user = session.scalar(select(User).where(func.lower(User.email) == email.strip().lower()))
    if user is None:
        raise NotFound(f"no user with email {email!r}; send them an invitation instead")
    member = session.get(ProjectMember, (project_id, user.id))
    if member is None and not actor.is_admin:
        project = session.get(Project, project_id)
        name = project.name if project is not None else project_id
        raise Conflict(
            f"{user.email} is not a member of project {name!r}: invite them (the project page's invitation "
            f"form, or POST /api/v1/projects/{name}/invitations); nobody joins a project without accepting"
        )
    if member is None:
        session.add(ProjectMember(project_id=project_id, user_id=user.id, role=role, created_at=utcnow()))
    else:
        if (
            member.role == "owner"
            and role != "owner"
            and _owners(session=session, project_id=project_id) <= 1
        ):
            raise Conflict("a project keeps at least one owner; make someone else owner first")
        member.role = role
        token_cache.forget_all(session)  # remembered accesses are checked again, now and at the commit
    session.flush()
    return MemberRow(user.id, user.email, role)


def _lock_members(session: Session, project_id: int) -> None:
    """Membership changes of one project one at a time (PostgreSQL: the project's row lock, taken
    before anything is read; SQLite's writes are serialised already). Two owners leaving, removing
    or demoting each other at once would otherwise both count two owners and leave none, and a role
    change racing a leave would update a row that is gone."""
    session.execute(select(Project.id).where(Project.id == project_id).with_for_update())


def remove_member(*, session: Session, actor: Actor, project_id: int, user_id: int) -> None:
    """Remove a member (owners), or leave the project (any member: ``user_id`` is the actor's own)."""
    _lock_members(session, project_id)
    check(
        session=session,
        actor=actor,
        project_id=project_id,
        action="read" if user_id == actor.user_id else "manage",
        missing=f"project {project_id} does not exist",
    )
    member = session.get(ProjectMember, (project_id, user_id))
    if member is None:
        raise NotFound(f"user {user_id} is not a member of this project")
    if member.role == "owner" and _owners(session=session, project_id=project_id) <= 1:
        raise Conflict("a project keeps at least one owner; make someone else owner first")
    session.delete(member)
    token_cache.forget_all(session)  # remembered accesses are checked again, now and at the commit
    session.flush()


def token_rows(*, session: Session, tokens: list[ApiToken]) -> list[TokenRow]:
    names: dict[int, list[str]] = {}
    ids = [t.id for t in tokens]
    if ids:
        scoped = session.execute(
            select(TokenProject.token_id, Project.name)
            .join(Project, Project.id == TokenProject.project_id)
            .where(TokenProject.token_id.in_(ids))
        )
        for token_id, name in scoped:
            names.setdefault(token_id, []).append(name)
    return [
        TokenRow(
            t.id, t.name, t.kind, t.prefix, t.created_at, t.last_used_at, t.revoked_at, names.get(t.id, [])
        )
        for t in tokens
    ]


def user_tokens(*, session: Session, user_id: int) -> list[TokenRow]:
    tokens = session.scalars(select(ApiToken).where(ApiToken.user_id == user_id).order_by(ApiToken.id.desc()))
    return token_rows(session=session, tokens=list(tokens))


def create_user_token(*, session: Session, actor: Actor, name: str) -> NewToken:
    user = session.get(User, actor.user_id)
    if user is None:
        raise NotFound(f"user {actor.user_id} does not exist")
    return create_token(session=session, user=user, name=_token_name(name), kind="user")


def _token_name(name: str) -> str:
    name = name.strip()
    if not 1 <= len(name) <= 200:
        raise InvalidInput(["name"], "a token name needs 1 to 200 characters")
    return name


def revoke_user_token(*, session: Session, actor: Actor, token_id: int) -> None:
    """Revoke one of the actor's own tokens (admins: anyone's); 404 for other people's."""
    token = session.get(ApiToken, token_id)
    if token is None or (token.user_id != actor.user_id and not actor.is_admin):
        raise NotFound(f"token {token_id} does not exist")
    revoke_token(session=session, token_id=token_id)


def project_worker_tokens(*, session: Session, actor: Actor, project_id: int) -> list[TokenRow]:
    check(
        session=session,
        actor=actor,
        project_id=project_id,
        action="manage",
        missing=f"project {project_id} does not exist",
    )
    tokens = session.scalars(
        select(ApiToken)
        .join(TokenProject, TokenProject.token_id == ApiToken.id)
        .where(TokenProject.project_id == project_id)
        .order_by(ApiToken.id.desc())
    )
    return token_rows(session=session, tokens=list(tokens))


def create_worker_token(*, session: Session, actor: Actor, project_id: int, name: str) -> NewToken:
    """A worker token that may ingest into this project's runs only (owners)."""
    check(
        session=session,
        actor=actor,
        project_id=project_id,
        action="manage",
        missing=f"project {project_id} does not exist",
    )
    user = session.get(User, actor.user_id)
    assert user is not None
    new = create_token(session=session, user=user, name=_token_name(name), kind="worker")
    session.add(TokenProject(token_id=new.record.id, project_id=project_id))
    session.flush()
    return new


def revoke_worker_token(*, session: Session, actor: Actor, project_id: int, token_id: int) -> None:
    check(
        session=session,
        actor=actor,
        project_id=project_id,
        action="manage",
        missing=f"project {project_id} does not exist",
    )
    if session.get(TokenProject, (token_id, project_id)) is None:
        raise NotFound(f"token {token_id} is not a worker token of this project")
    revoke_token(session=session, token_id=token_id)
