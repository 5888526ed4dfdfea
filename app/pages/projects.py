"""Project pages: the list (and creating one), and a project's page with its reports; owners also
manage members, invitations and the project's worker tokens there."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy.orm import Session

from app.auth import invitations, projects, roles
from app.compare import reports
from app.deps import SessionDep
from app.errors import DomainError
from app.pages.account import NO_STORE, actor_of
from app.pages.common import Browser, BrowserDep, check_csrf, redirect, render

router = APIRouter(include_in_schema=False)
CsrfForm = Annotated[str, Form()]
T = TypeVar("T")


@router.get("/projects", response_class=HTMLResponse)
def projects_page(request: Request, browser: BrowserDep, session: SessionDep) -> HTMLResponse:
    rows = projects.my_projects(session=session, actor=actor_of(browser))
    return render(request, browser, "projects.html", {"nav": "projects", "projects": rows, "error": ""})


@router.post("/projects", response_model=None)
def create_project(
    request: Request,
    browser: BrowserDep,
    session: SessionDep,
    name: Annotated[str, Form(max_length=64)] = "",
    csrf_token: CsrfForm = "",
) -> Response:
    check_csrf(request, browser, csrf_token)
    try:
        project = projects.create_project(session=session, actor=actor_of(browser), name=name.strip())
    except DomainError as exc:
        rows = projects.my_projects(session=session, actor=actor_of(browser))
        context = {"nav": "projects", "projects": rows, "error": exc.message}
        return render(request, browser, "projects.html", context, status_code=exc.status_code)
    session.commit()
    return redirect(request, f"/projects/{project.name}")


def _project_page(
    request: Request, browser: Browser, session: Any, name: str, *, status_code: int = 200, **extra: Any
) -> HTMLResponse:
    actor = actor_of(browser)
    project = roles.project_named(session=session, actor=actor, name=name, action="read")
    role = roles.effective_role(session=session, actor=actor, project_id=project.id)
    owner = role == "owner"
    context = {
        "nav": "projects",
        "project": project,
        "role": role,
        "is_owner": owner,
        "me": actor.user_id,
        "members": projects.members(session=session, project_id=project.id),
        "reports": reports.project_reports(session=session, project_id=project.id),
        "worker_tokens": projects.project_worker_tokens(session=session, actor=actor, project_id=project.id)
        if owner
        else [],
        "invite_url": None,
        "new_token": None,
        "error": "",
    } | extra
    response = render(request, browser, "project.html", context, status_code=status_code)
    response.headers.update(NO_STORE)
    return response


@router.get("/projects/{name}", response_class=HTMLResponse)
def project_page(name: str, request: Request, browser: BrowserDep, session: SessionDep) -> HTMLResponse:
    return _project_page(request, browser, session, name)


def _owner_change(
    request: Request,
    browser: Browser,
    session: Session,
    name: str,
    csrf_token: str,
    change: Callable[[roles.Actor, int], T],
    done: Callable[[T], Response],
) -> Response:
    """What every owner form on the project page does: check the CSRF token and the ``manage`` role,
    make ``change(actor, project_id)``, commit and answer ``done(result)``; a refused change
    answers the project page again with the reason (and its status)."""
    check_csrf(request, browser, csrf_token)
    actor = actor_of(browser)
    project = roles.project_named(session=session, actor=actor, name=name, action="manage")
    try:
        result = change(actor, project.id)
    except DomainError as exc:
        return _project_page(request, browser, session, name, error=exc.message, status_code=exc.status_code)
    response = done(result)  # rendered before the commit: reading after it would begin a second
    session.commit()  # write transaction on this session (on SQLite, the write lock again)
    return response


@router.post("/projects/{name}/members", response_model=None)
def set_member(
    name: str,
    request: Request,
    browser: BrowserDep,
    session: SessionDep,
    email: Annotated[str, Form(max_length=320)] = "",
    role: Annotated[str, Form(max_length=16)] = "viewer",
    csrf_token: CsrfForm = "",
) -> Response:
    return _owner_change(
        request, browser, session, name, csrf_token,
        lambda actor, project_id: projects.set_member(
            session=session, actor=actor, project_id=project_id, email=email, role=role,
        ),
        lambda _: redirect(request, f"/projects/{name}"),
    )  # fmt: skip


@router.post("/projects/{name}/members/{user_id}/remove", response_model=None)
def remove_member(
    name: str,
    user_id: int,
    request: Request,
    browser: BrowserDep,
    session: SessionDep,
    csrf_token: CsrfForm = "",
) -> Response:
    return _owner_change(
        request, browser, session, name, csrf_token,
        lambda actor, project_id: projects.remove_member(
            session=session, actor=actor, project_id=project_id, user_id=user_id,
        ),
        lambda _: redirect(request, f"/projects/{name}"),
    )  # fmt: skip


@router.post("/projects/{name}/leave", response_model=None)
def leave(
    name: str, request: Request, browser: BrowserDep, session: SessionDep, csrf_token: CsrfForm = ""
) -> Response:
    """Leave the project (any member; the last owner stays): back to the list of projects."""
    check_csrf(request, browser, csrf_token)
    actor = actor_of(browser)
    project = roles.project_named(session=session, actor=actor, name=name, action="read")
    try:
        projects.remove_member(session=session, actor=actor, project_id=project.id, user_id=actor.user_id)
    except DomainError as exc:
        return _project_page(request, browser, session, name, error=exc.message, status_code=exc.status_code)
    session.commit()
    return redirect(request, "/projects")


@router.post("/projects/{name}/invitations", response_model=None)
def invite(
    name: str,
    request: Request,
    browser: BrowserDep,
    session: SessionDep,
    email: Annotated[str, Form(max_length=320)] = "",
    role: Annotated[str, Form(max_length=16)] = "viewer",
    csrf_token: CsrfForm = "",
) -> Response:
    """Create an invite link and show it once."""
    base = str(request.base_url).rstrip("/")
    return _owner_change(
        request, browser, session, name, csrf_token,
        lambda actor, project_id: invitations.create_invitation(
            session=session, actor=actor, email=email, project_id=project_id, role=role,
            local_admin_email=request.app.state.settings.admin_email,
        ),
        lambda new: _project_page(request, browser, session, name, invite_url=f"{base}/invite/{new.token}"),
    )  # fmt: skip


@router.post("/projects/{name}/worker-tokens", response_model=None)
def create_worker_token(
    name: str,
    request: Request,
    browser: BrowserDep,
    session: SessionDep,
    token_name: Annotated[str, Form(max_length=200)] = "worker",
    csrf_token: CsrfForm = "",
) -> Response:
    """Create a worker token for this project and show it once."""
    return _owner_change(
        request, browser, session, name, csrf_token,
        lambda actor, project_id: projects.create_worker_token(
            session=session, actor=actor, project_id=project_id, name=token_name,
        ),
        lambda new: _project_page(request, browser, session, name, new_token=new.token),
    )  # fmt: skip


@router.post("/projects/{name}/worker-tokens/{token_id}/revoke", response_model=None)
def revoke_worker_token(
    name: str,
    token_id: int,
    request: Request,
    browser: BrowserDep,
    session: SessionDep,
    csrf_token: CsrfForm = "",
) -> Response:
    return _owner_change(
        request, browser, session, name, csrf_token,
        lambda actor, project_id: projects.revoke_worker_token(
            session=session, actor=actor, project_id=project_id, token_id=token_id,
        ),
        lambda _: redirect(request, f"/projects/{name}"),
    )  # fmt: skip
