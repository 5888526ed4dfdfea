"""Accounts over the API: who am I, personal tokens, projects, members, invitations, worker tokens.

Roles are enforced by ``app.auth.projects`` / ``app.auth.accounts`` through ``app.auth.roles``:
every user lists and creates their own tokens and projects; owners (and admins) manage members,
invitations and the project's worker tokens. Worker tokens are refused here (403).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Response
from sqlalchemy.orm import Session

from app.api.access import UserActorDep
from app.auth import invitations, projects, roles
from app.auth.api_tokens import NewToken
from app.auth.schemas import (
    InvitationCreate,
    InvitationPublic,
    MemberPublic,
    MemberSet,
    MePublic,
    ProjectCreate,
    ProjectPublic,
    TokenCreate,
    TokenCreated,
    TokenPublic,
)
from app.deps import MAX_ID, SessionDep, SettingsDep
from app.errors import NotFound
from app.models import Project, User

router = APIRouter(prefix="/api/v1", tags=["accounts"])
IdPath = Annotated[int, Path(ge=1, le=MAX_ID)]
NamePath = Annotated[str, Path(min_length=1, max_length=64)]


def _token(row: projects.TokenRow) -> TokenPublic:
    return TokenPublic.model_validate(row, from_attributes=True)


def _created(session: Session, new: NewToken) -> TokenCreated:
    rows = projects.token_rows(session=session, tokens=[new.record])
    return TokenCreated(**_token(rows[0]).model_dump(), token=new.token)


def _project(session: Session, actor: roles.Actor, name: str, action: roles.Action) -> Project:
    return roles.project_named(session=session, actor=actor, name=name, action=action)


@router.get("/me", response_model=MePublic)
def me(session: SessionDep, actor: UserActorDep) -> MePublic:
    user = session.get(User, actor.user_id)
    if user is None:
        raise NotFound("your user no longer exists")
    return MePublic(id=user.id, email=user.email, is_admin=user.is_admin)


@router.get("/tokens", response_model=list[TokenPublic])
def list_tokens(session: SessionDep, actor: UserActorDep) -> list[TokenPublic]:
    """Your tokens (revoked ones included), newest first, with their last-used time."""
    return [_token(row) for row in projects.user_tokens(session=session, user_id=actor.user_id)]


@router.post("/tokens", status_code=201, response_model=TokenCreated)
def create_token(data: TokenCreate, session: SessionDep, actor: UserActorDep) -> TokenCreated:
    """A personal API token; the secret is in this response only (stored as sha256)."""
    new = projects.create_user_token(session=session, actor=actor, name=data.name)
    created = _created(session, new)
    session.commit()
    return created


@router.delete("/tokens/{token_id}", status_code=204)
def revoke_token(token_id: IdPath, session: SessionDep, actor: UserActorDep) -> Response:
    projects.revoke_user_token(session=session, actor=actor, token_id=token_id)
    session.commit()
    return Response(status_code=204)


@router.get("/projects", response_model=list[ProjectPublic])
def list_projects(session: SessionDep, actor: UserActorDep) -> list[ProjectPublic]:
    return [
        ProjectPublic(id=p.id, name=p.name, role=p.role)
        for p in projects.my_projects(session=session, actor=actor)
    ]


@router.post("/projects", status_code=201, response_model=ProjectPublic)
def create_project(data: ProjectCreate, session: SessionDep, actor: UserActorDep) -> ProjectPublic:
    """A new project; you become its owner."""
    project = projects.create_project(session=session, actor=actor, name=data.name)
    session.commit()
    return ProjectPublic(id=project.id, name=project.name, role="owner")


@router.get("/projects/{name}/members", response_model=list[MemberPublic])
def list_members(name: NamePath, session: SessionDep, actor: UserActorDep) -> list[MemberPublic]:
    project = _project(session, actor, name, "read")
    return [
        MemberPublic.model_validate(m, from_attributes=True)
        for m in projects.members(session=session, project_id=project.id)
    ]


@router.put("/projects/{name}/members", response_model=MemberPublic)
def set_member(name: NamePath, data: MemberSet, session: SessionDep, actor: UserActorDep) -> MemberPublic:
    """Change a member's role (owners). Adding someone: invite them (``POST …/invitations``; they
    join by accepting); only the server's admin adds an existing account directly (409 otherwise)."""
    project = _project(session, actor, name, "manage")
    row = projects.set_member(
        session=session, actor=actor, project_id=project.id, email=data.email, role=data.role
    )
    session.commit()
    return MemberPublic.model_validate(row, from_attributes=True)


@router.delete("/projects/{name}/members/{user_id}", status_code=204)
def remove_member(name: NamePath, user_id: IdPath, session: SessionDep, actor: UserActorDep) -> Response:
    """Remove a member (owners), or leave the project (your own user id; the last owner stays)."""
    project = _project(session, actor, name, "read" if user_id == actor.user_id else "manage")
    projects.remove_member(session=session, actor=actor, project_id=project.id, user_id=user_id)
    session.commit()
    return Response(status_code=204)


@router.post("/projects/{name}/invitations", status_code=201, response_model=InvitationPublic)
def invite(
    name: NamePath, data: InvitationCreate, session: SessionDep, settings: SettingsDep, actor: UserActorDep
) -> InvitationPublic:
    """An invite link (owners). A new email: the invitee opens it, chooses a password and joins
    with ``role``. An email that has an account: that account signs in with its own password and
    accepts on the link's page (the link never signs in as it or changes it). The local admin's
    address cannot be invited (422)."""
    project = _project(session, actor, name, "manage")
    new = invitations.create_invitation(
        session=session,
        actor=actor,
        email=data.email,
        project_id=project.id,
        role=data.role,
        local_admin_email=settings.admin_email,
    )
    session.commit()
    url = f"{settings.public_url.rstrip('/')}/invite/{new.token}"
    return InvitationPublic(
        email=new.invitation.email, role=data.role, expires_at=new.invitation.expires_at, url=url
    )


@router.get("/projects/{name}/worker-tokens", response_model=list[TokenPublic])
def list_worker_tokens(name: NamePath, session: SessionDep, actor: UserActorDep) -> list[TokenPublic]:
    project = _project(session, actor, name, "manage")
    return [
        _token(row)
        for row in projects.project_worker_tokens(session=session, actor=actor, project_id=project.id)
    ]


@router.post("/projects/{name}/worker-tokens", status_code=201, response_model=TokenCreated)
def create_worker_token(
    name: NamePath, data: TokenCreate, session: SessionDep, actor: UserActorDep
) -> TokenCreated:
    """A worker token limited to this project's runs, ingestion routes only (owners)."""
    project = _project(session, actor, name, "manage")
    new = projects.create_worker_token(session=session, actor=actor, project_id=project.id, name=data.name)
    created = _created(session, new)
    session.commit()
    return created


@router.delete("/projects/{name}/worker-tokens/{token_id}", status_code=204)
def revoke_worker_token(
    name: NamePath, token_id: IdPath, session: SessionDep, actor: UserActorDep
) -> Response:
    project = _project(session, actor, name, "manage")
    projects.revoke_worker_token(session=session, actor=actor, project_id=project.id, token_id=token_id)
    session.commit()
    return Response(status_code=204)
