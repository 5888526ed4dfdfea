"""Accounts over the API: who am I, personal tokens, projects, members, invitations, worker tokens.

Roles are enforced by ``app.projects`` / ``app.accounts`` through ``app.authz``: every user lists
and creates their own tokens and projects; owners (and admins) manage members, invitations and
the project's worker tokens. Worker tokens are refused here (403).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Response
from sqlalchemy.orm import Session

from app import accounts, authz, projects
from app.access import UserActorDep
from app.api.common import MAX_ID
from app.deps import SessionDep, SettingsDep
from app.models import Project, User
from app.schemas import (
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
from app.services.errors import NotFound
from app.services.tokens import NewToken

router = APIRouter(prefix="/api/v1", tags=["accounts"])
IdPath = Annotated[int, Path(ge=1, le=MAX_ID)]
NamePath = Annotated[str, Path(min_length=1, max_length=64)]


def _token(row: projects.TokenRow) -> TokenPublic:
    return TokenPublic.model_validate(row, from_attributes=True)


def _created(session: Session, new: NewToken) -> TokenCreated:
    rows = projects.token_rows(session, [new.record])
    return TokenCreated(**_token(rows[0]).model_dump(), token=new.token)


def _project(session: Session, actor: authz.Actor, name: str, action: authz.Action) -> Project:
    return authz.project_named(session, actor, name, action)


@router.get("/me", response_model=MePublic)
def me(session: SessionDep, actor: UserActorDep) -> MePublic:
    user = session.get(User, actor.user_id)
    if user is None:
        raise NotFound("your user no longer exists")
    return MePublic(id=user.id, email=user.email, is_admin=user.is_admin)


@router.get("/tokens", response_model=list[TokenPublic])
def list_tokens(session: SessionDep, actor: UserActorDep) -> list[TokenPublic]:
    """Your tokens (revoked ones included), newest first, with their last-used time."""
    return [_token(row) for row in projects.user_tokens(session, actor.user_id)]


@router.post("/tokens", status_code=201, response_model=TokenCreated)
def create_token(data: TokenCreate, session: SessionDep, actor: UserActorDep) -> TokenCreated:
    """A personal API token; the secret is in this response only (stored as sha256)."""
    new = projects.create_user_token(session, actor, name=data.name)
    created = _created(session, new)
    session.commit()
    return created


@router.delete("/tokens/{token_id}", status_code=204)
def revoke_token(token_id: IdPath, session: SessionDep, actor: UserActorDep) -> Response:
    projects.revoke_user_token(session, actor, token_id)
    session.commit()
    return Response(status_code=204)


@router.get("/projects", response_model=list[ProjectPublic])
def list_projects(session: SessionDep, actor: UserActorDep) -> list[ProjectPublic]:
    return [ProjectPublic(id=p.id, name=p.name, role=p.role) for p in projects.my_projects(session, actor)]


@router.post("/projects", status_code=201, response_model=ProjectPublic)
def create_project(data: ProjectCreate, session: SessionDep, actor: UserActorDep) -> ProjectPublic:
    """A new project; you become its owner."""
    project = projects.create_project(session, actor, data.name)
    session.commit()
    return ProjectPublic(id=project.id, name=project.name, role="owner")


@router.get("/projects/{name}/members", response_model=list[MemberPublic])
def list_members(name: NamePath, session: SessionDep, actor: UserActorDep) -> list[MemberPublic]:
    project = _project(session, actor, name, "read")
    return [
        MemberPublic.model_validate(m, from_attributes=True) for m in projects.members(session, project.id)
    ]


@router.put("/projects/{name}/members", response_model=MemberPublic)
def set_member(name: NamePath, data: MemberSet, session: SessionDep, actor: UserActorDep) -> MemberPublic:
    """Add an existing user to the project or change their role (owners)."""
    project = _project(session, actor, name, "manage")
    row = projects.set_member(session, actor, project.id, email=data.email, role=data.role)
    session.commit()
    return MemberPublic.model_validate(row, from_attributes=True)


@router.delete("/projects/{name}/members/{user_id}", status_code=204)
def remove_member(name: NamePath, user_id: IdPath, session: SessionDep, actor: UserActorDep) -> Response:
    project = _project(session, actor, name, "manage")
    projects.remove_member(session, actor, project.id, user_id=user_id)
    session.commit()
    return Response(status_code=204)


@router.post("/projects/{name}/invitations", status_code=201, response_model=InvitationPublic)
def invite(
    name: NamePath, data: InvitationCreate, session: SessionDep, settings: SettingsDep, actor: UserActorDep
) -> InvitationPublic:
    """An invite link (owners): the invitee opens it, sets a password and joins with ``role``."""
    project = _project(session, actor, name, "manage")
    new = accounts.create_invitation(session, actor, email=data.email, project_id=project.id, role=data.role)
    session.commit()
    url = f"{settings.public_url.rstrip('/')}/invite/{new.token}"
    return InvitationPublic(
        email=new.invitation.email, role=data.role, expires_at=new.invitation.expires_at, url=url
    )


@router.get("/projects/{name}/worker-tokens", response_model=list[TokenPublic])
def list_worker_tokens(name: NamePath, session: SessionDep, actor: UserActorDep) -> list[TokenPublic]:
    project = _project(session, actor, name, "manage")
    return [_token(row) for row in projects.project_worker_tokens(session, actor, project.id)]


@router.post("/projects/{name}/worker-tokens", status_code=201, response_model=TokenCreated)
def create_worker_token(
    name: NamePath, data: TokenCreate, session: SessionDep, actor: UserActorDep
) -> TokenCreated:
    """A worker token limited to this project's runs, ingestion routes only (owners)."""
    project = _project(session, actor, name, "manage")
    new = projects.create_worker_token(session, actor, project.id, name=data.name)
    created = _created(session, new)
    session.commit()
    return created


@router.delete("/projects/{name}/worker-tokens/{token_id}", status_code=204)
def revoke_worker_token(
    name: NamePath, token_id: IdPath, session: SessionDep, actor: UserActorDep
) -> Response:
    project = _project(session, actor, name, "manage")
    projects.revoke_worker_token(session, actor, project.id, token_id)
    session.commit()
    return Response(status_code=204)
