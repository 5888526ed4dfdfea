"""Who may do what: project roles (viewer < editor < owner), admins, worker tokens (DESIGN.md §6).

Plain functions over a session and an :class:`Actor`; routes reach them through the typed
dependencies in ``app.api.access`` (API) and small calls in the pages.

- viewers read a project's runs, reports and pages;
- editors also create runs, submit/cancel/re-run jobs, log (SDK ingestion) and write reports;
- owners also manage members, invitations and the project's worker tokens;
- admins may do everything everywhere.

Someone who is not a member gets :class:`NotFound` (404), worded like a missing object, so a
project's existence does not leak; a member lacking the role gets :class:`Forbidden` (403).

Worker tokens only ingest (claim, heartbeat, finish, logs, epochs, metrics, checkpoints). A worker
token with rows in ``token_projects`` is limited to those projects; one without (the embedded
worker's, created by ``collapsewatch up`` for the local admin) reaches every project its user may
edit, i.e. all of them for an admin. Either way the token's user must still be an editor there.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import Integer, bindparam, or_, select
from sqlalchemy.orm import Session

from app.auth.models import TokenProject
from app.auth.tokens import Principal
from app.errors import Conflict, DomainError, NotFound
from app.models import Project, ProjectMember, Run

Role = Literal["viewer", "editor", "owner"]
Action = Literal["read", "write", "ingest", "manage"]
ROLES: tuple[Role, ...] = ("viewer", "editor", "owner")
RANK: dict[str, int] = {"viewer": 1, "editor": 2, "owner": 3}
NEEDS: dict[Action, Role] = {"read": "viewer", "write": "editor", "ingest": "editor", "manage": "owner"}
WORKER_ONLY_INGESTS = "worker tokens may only call the ingestion and lifecycle routes"


class Forbidden(DomainError):
    status_code = 403


@dataclass(frozen=True)
class Actor:
    """The caller as far as permissions go (a user, or a worker token of a user)."""

    user_id: int
    is_admin: bool = False
    worker_token_id: int | None = None

    @classmethod
    def of(cls, principal: Principal) -> Actor:
        worker = principal.token_id if principal.is_worker else None
        return cls(principal.user_id, principal.is_admin, worker)

    @property
    def is_worker(self) -> bool:
        return self.worker_token_id is not None


def member_role(*, session: Session, user_id: int, project_id: int) -> Role | None:
    role = session.scalar(
        select(ProjectMember.role).where(
            ProjectMember.project_id == project_id, ProjectMember.user_id == user_id
        )
    )
    return role if role in RANK else None  # type: ignore[return-value]


def effective_role(*, session: Session, actor: Actor, project_id: int) -> Role | None:
    """The actor's role in the project (admins count as owners; worker tokens have none)."""
    if actor.is_worker:
        return None
    if actor.is_admin:
        return "owner"
    return member_role(session=session, user_id=actor.user_id, project_id=project_id)


def _access_columns(actor: Actor, project_id: Any) -> list[Any]:
    """SQL for what a permission check needs to know about ``project_id`` (a value or a column):
    the member role (unless the actor is an admin) and, for a worker token, whether the project is
    within the token's scope. Read together with the project (or the run), in one round trip."""
    return _columns(actor.is_admin, actor.user_id, actor.worker_token_id, project_id)


def _columns(is_admin: bool, user_id: Any, token_id: Any, project_id: Any) -> list[Any]:
    """:func:`_access_columns` from its parts (values, or bound parameters of a prebuilt statement)."""
    columns: list[Any] = []
    if not is_admin:
        role = select(ProjectMember.role).where(
            ProjectMember.project_id == project_id, ProjectMember.user_id == user_id
        )
        columns.append(role.scalar_subquery().label("role"))
    if token_id is not None:
        scope = select(TokenProject.project_id).where(TokenProject.token_id == token_id)
        in_scope = or_(~scope.exists(), scope.where(TokenProject.project_id == project_id).exists())
        columns.append(in_scope.label("in_scope"))
    return columns


def _decide(actor: Actor, action: Action, facts: Any, *, missing: str) -> None:
    """Allow ``action`` given the row of :func:`_access_columns`, or raise NotFound / Forbidden."""
    role = "owner" if actor.is_admin else facts.role
    if actor.worker_token_id is not None:
        if action != "ingest":
            raise Forbidden(WORKER_ONLY_INGESTS)
        if not facts.in_scope or role not in RANK or RANK[role] < RANK["editor"]:
            raise NotFound(missing)
        return
    if role not in RANK:
        raise NotFound(missing)
    need = NEEDS[action]
    if RANK[role] < RANK[need]:
        raise Forbidden(f"this needs the {need} role in the project (you are a {role})")


def check(*, session: Session, actor: Actor, project_id: int, action: Action, missing: str) -> None:
    """Allow ``action`` on the project or raise NotFound(``missing``) / Forbidden."""
    columns = _access_columns(actor, project_id)
    facts = session.execute(select(*columns)).one() if columns else None
    _decide(actor, action, facts, missing=missing)


def check_run(*, session: Session, actor: Actor, run_id: int, action: Action) -> int:
    """The run's project id, once ``action`` on run ``run_id`` is allowed (404 for outsiders)."""
    missing = f"run {run_id} does not exist"
    params = {"run_id": run_id, "user_id": actor.user_id, "token_id": actor.worker_token_id}
    row = session.execute(_run_access(actor), params).first()
    if row is None:
        raise NotFound(missing)
    _decide(actor, action, row, missing=missing)
    project_id: int = row.project_id
    return project_id


_RUN_ACCESS: dict[tuple[bool, bool], Any] = {}


def _run_access(actor: Actor) -> Any:
    """:func:`check_run`'s SELECT for the actor's kind, built once with bound parameters (every
    ingestion request runs it: building it anew cost more than executing it)."""
    shape = (actor.is_admin, actor.worker_token_id is not None)
    stmt = _RUN_ACCESS.get(shape)
    if stmt is None:
        token = bindparam("token_id", type_=Integer) if shape[1] else None
        columns = _columns(shape[0], bindparam("user_id", type_=Integer), token, Run.project_id)
        stmt = _RUN_ACCESS[shape] = select(Run.project_id, *columns).where(
            Run.id == bindparam("run_id", type_=Integer)
        )
    return stmt


def project_named(*, session: Session, actor: Actor, name: str, action: Action) -> Project:
    """The project called ``name`` once ``action`` is allowed there (404 for outsiders)."""
    project = session.scalar(select(Project).where(Project.name == name))
    missing = f"project {name!r} does not exist"
    if project is None:
        raise NotFound(missing)
    check(session=session, actor=actor, project_id=project.id, action=action, missing=missing)
    return project


def name_taken(name: str) -> Conflict:
    """What a create with a name in use hears, whether or not the caller may see that project:
    project names are global (URLs and ``cw.init(project=...)`` use them), so the answer says only
    that the name is taken."""
    return Conflict(
        f"the project name {name!r} is taken; choose another name (or ask its owner to invite you)"
    )


def check_new_runs(*, session: Session, actor: Actor, project_name: str) -> None:
    """Creating runs in ``project_name``: editors of an existing project; anyone (not a worker
    token) for a new one, who then becomes its owner. Someone who cannot see an existing project
    hears only that its name is taken (409), never whether it exists."""
    if actor.is_worker:
        raise Forbidden(WORKER_ONLY_INGESTS)
    project_id = session.scalar(select(Project.id).where(Project.name == project_name))
    if project_id is None:
        return
    if effective_role(session=session, actor=actor, project_id=project_id) is None:
        raise name_taken(project_name)
    check(
        session=session,
        actor=actor,
        project_id=project_id,
        action="write",
        missing=f"project {project_name!r} does not exist",
    )


def highest_role(*, session: Session, actor: Actor) -> Role | None:
    """The actor's highest role in any project (admins: owner): which actions a page offers at all."""
    if actor.is_worker:
        return None
    if actor.is_admin:
        return "owner"
    found = session.scalars(select(ProjectMember.role).where(ProjectMember.user_id == actor.user_id))
    best: Role | None = None
    for role in found:
        if role in RANK and (best is None or RANK[role] > RANK[best]):
            best = role  # type: ignore[assignment]
    return best


def visible_project_ids(*, session: Session, actor: Actor) -> list[int] | None:
    """Projects the actor may read (None: all of them, for admins)."""
    if actor.is_admin and not actor.is_worker:
        return None
    if actor.is_worker:
        return []
    stmt = select(ProjectMember.project_id).where(ProjectMember.user_id == actor.user_id)
    return list(session.scalars(stmt))


def readable_run_ids(*, session: Session, actor: Actor, run_ids: Collection[int]) -> set[int]:
    """The subset of ``run_ids`` that exist and that the actor may read."""
    stmt = select(Run.id).where(Run.id.in_(list(run_ids)))
    visible = visible_project_ids(session=session, actor=actor)
    if visible is not None:
        stmt = stmt.where(Run.project_id.in_(visible))
    return set(session.scalars(stmt))


def role_at_least(role: str | None, need: Role) -> bool:
    return role is not None and RANK.get(role, 0) >= RANK[need]
