"""Project pages: the list (and creating one), and a project's page with its reports; owners also
manage members, invitations and the project's worker tokens there."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, Response

from app import accounts, authz, projects, reports
from app.deps import SessionDep
from app.pages.account import NO_STORE, actor_of
from app.pages.common import Browser, BrowserDep, check_csrf, redirect, render
from app.services.errors import DomainError

router = APIRouter(include_in_schema=False)
CsrfForm = Annotated[str, Form()]


@router.get("/projects", response_class=HTMLResponse)
def projects_page(request: Request, browser: BrowserDep, session: SessionDep) -> HTMLResponse:
    rows = projects.my_projects(session, actor_of(browser))
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
        project = projects.create_project(session, actor_of(browser), name.strip())
    except DomainError as exc:
        rows = projects.my_projects(session, actor_of(browser))
        context = {"nav": "projects", "projects": rows, "error": exc.message}
        return render(request, browser, "projects.html", context, status_code=exc.status_code)
    session.commit()
    return redirect(request, f"/projects/{project.name}")


def _project_page(
    request: Request, browser: Browser, session: Any, name: str, *, status_code: int = 200, **extra: Any
) -> HTMLResponse:
    actor = actor_of(browser)
    project = authz.project_named(session, actor, name, "read")
    role = authz.effective_role(session, actor, project.id)
    owner = role == "owner"
    context = {
        "nav": "projects",
        "project": project,
        "role": role,
        "is_owner": owner,
        "members": projects.members(session, project.id),
        "reports": reports.project_reports(session, project.id),
        "worker_tokens": projects.project_worker_tokens(session, actor, project.id) if owner else [],
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
    check_csrf(request, browser, csrf_token)
    actor = actor_of(browser)
    project = authz.project_named(session, actor, name, "manage")
    try:
        projects.set_member(session, actor, project.id, email=email, role=role)
    except DomainError as exc:
        return _project_page(request, browser, session, name, error=exc.message, status_code=exc.status_code)
    session.commit()
    return redirect(request, f"/projects/{name}")


@router.post("/projects/{name}/members/{user_id}/remove", response_model=None)
def remove_member(
    name: str,
    user_id: int,
    request: Request,
    browser: BrowserDep,
    session: SessionDep,
    csrf_token: CsrfForm = "",
) -> Response:
    check_csrf(request, browser, csrf_token)
    actor = actor_of(browser)
    project = authz.project_named(session, actor, name, "manage")
    try:
        projects.remove_member(session, actor, project.id, user_id=user_id)
    except DomainError as exc:
        return _project_page(request, browser, session, name, error=exc.message, status_code=exc.status_code)
    session.commit()
    return redirect(request, f"/projects/{name}")


@router.post("/projects/{name}/invitations", response_class=HTMLResponse)
def invite(
    name: str,
    request: Request,
    browser: BrowserDep,
    session: SessionDep,
    email: Annotated[str, Form(max_length=320)] = "",
    role: Annotated[str, Form(max_length=16)] = "viewer",
    csrf_token: CsrfForm = "",
) -> HTMLResponse:
    """Create an invite link and show it once."""
    check_csrf(request, browser, csrf_token)
    actor = actor_of(browser)
    project = authz.project_named(session, actor, name, "manage")
    try:
        new = accounts.create_invitation(session, actor, email=email, project_id=project.id, role=role)
    except DomainError as exc:
        return _project_page(request, browser, session, name, error=exc.message, status_code=exc.status_code)
    session.commit()
    url = f"{str(request.base_url).rstrip('/')}/invite/{new.token}"
    return _project_page(request, browser, session, name, invite_url=url)


@router.post("/projects/{name}/worker-tokens", response_class=HTMLResponse)
def create_worker_token(
    name: str,
    request: Request,
    browser: BrowserDep,
    session: SessionDep,
    token_name: Annotated[str, Form(max_length=200)] = "worker",
    csrf_token: CsrfForm = "",
) -> HTMLResponse:
    check_csrf(request, browser, csrf_token)
    actor = actor_of(browser)
    project = authz.project_named(session, actor, name, "manage")
    try:
        new = projects.create_worker_token(session, actor, project.id, name=token_name)
    except DomainError as exc:
        return _project_page(request, browser, session, name, error=exc.message, status_code=exc.status_code)
    session.commit()
    return _project_page(request, browser, session, name, new_token=new.token)


@router.post("/projects/{name}/worker-tokens/{token_id}/revoke", response_model=None)
def revoke_worker_token(
    name: str,
    token_id: int,
    request: Request,
    browser: BrowserDep,
    session: SessionDep,
    csrf_token: CsrfForm = "",
) -> Response:
    check_csrf(request, browser, csrf_token)
    actor = actor_of(browser)
    project = authz.project_named(session, actor, name, "manage")
    projects.revoke_worker_token(session, actor, project.id, token_id)
    session.commit()
    return redirect(request, f"/projects/{name}")
