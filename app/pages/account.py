"""The account page (personal API tokens: create, shown once, revoke, last use; password change)
and the invitation page (the invitee sets a password and is signed in)."""

from __future__ import annotations

import hmac
import secrets
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, Response

from app.auth import accounts, projects, roles
from app.auth.sessions import create_session
from app.deps import SessionDep, database_of
from app.errors import DomainError
from app.pages.common import Browser, BrowserDep, check_csrf, redirect, render, set_session_cookie

router = APIRouter(include_in_schema=False)
NO_STORE = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}
INVITE_CSRF_COOKIE = "cw_invite_csrf"


def actor_of(browser: Browser) -> roles.Actor:
    return roles.Actor(browser.user_id, browser.is_admin)


def _account_page(
    request: Request, browser: Browser, session: Any, *, status_code: int = 200, **extra: Any
) -> HTMLResponse:
    actor = actor_of(browser)
    context = {
        "nav": "account",
        "tokens": projects.user_tokens(session=session, user_id=browser.user_id),
        "projects": projects.my_projects(session=session, actor=actor),
        "new_token": None,
        "message": "",
        "error": "",
    } | extra
    response = render(request, browser, "account.html", context, status_code=status_code)
    response.headers.update(NO_STORE)
    return response


@router.get("/account", response_class=HTMLResponse)
def account(request: Request, browser: BrowserDep, session: SessionDep) -> HTMLResponse:
    return _account_page(request, browser, session)


@router.post("/account/tokens", response_class=HTMLResponse)
def create_token(
    request: Request,
    browser: BrowserDep,
    session: SessionDep,
    name: Annotated[str, Form(max_length=200)] = "",
    csrf_token: Annotated[str, Form()] = "",
) -> HTMLResponse:
    """Create a token and show it once (the page is not cached)."""
    check_csrf(request, browser, csrf_token)
    try:
        new = projects.create_user_token(session=session, actor=actor_of(browser), name=name)
    except DomainError as exc:
        return _account_page(request, browser, session, error=exc.message, status_code=exc.status_code)
    session.commit()
    return _account_page(request, browser, session, new_token=new.token)


@router.post("/account/tokens/{token_id}/revoke")
def revoke_token(
    token_id: int,
    request: Request,
    browser: BrowserDep,
    session: SessionDep,
    csrf_token: Annotated[str, Form()] = "",
) -> Response:
    check_csrf(request, browser, csrf_token)
    projects.revoke_user_token(session=session, actor=actor_of(browser), token_id=token_id)
    session.commit()
    return redirect(request, "/account")


@router.post("/account/password", response_class=HTMLResponse)
def change_password(
    request: Request,
    browser: BrowserDep,
    session: SessionDep,
    current_password: Annotated[str, Form(max_length=1024)] = "",
    new_password: Annotated[str, Form(max_length=1024)] = "",
    csrf_token: Annotated[str, Form()] = "",
) -> HTMLResponse:
    check_csrf(request, browser, csrf_token)
    try:
        accounts.change_password(
            session=session, user_id=browser.user_id, current=current_password, new=new_password
        )
    except DomainError as exc:
        return _account_page(request, browser, session, error=exc.message, status_code=422)
    session.commit()
    return _account_page(request, browser, session, message="Password changed.")


def _invite_page(request: Request, context: dict[str, Any], status_code: int = 200) -> HTMLResponse:
    """The form carries a double-submit CSRF token (no session exists yet), as the login form."""
    form_token = secrets.token_urlsafe(24)
    context = {"form_csrf": form_token} | context
    response = render(request, None, "invite.html", context, status_code=status_code)
    response.headers.update(NO_STORE)
    response.set_cookie(INVITE_CSRF_COOKIE, form_token, httponly=True, samesite="strict", path="/invite")
    return response


def _invite_context(session: Any, token: str, error: str) -> dict[str, Any]:
    """The page's context: the form while the invitation is open, else only the reason."""
    try:
        found: Any = accounts.open_invitation(session=session, token=token)
    except DomainError as exc:
        return {"error": exc.message, "invitation": None, "status": exc.status_code}
    return {"error": error, "invitation": found, "token": token, "status": 200}


@router.get("/invite/{token}", response_class=HTMLResponse)
def invitation(token: str, request: Request, session: SessionDep) -> HTMLResponse:
    context = _invite_context(session, token, "")
    return _invite_page(request, context, context["status"])  # 404 unknown or used, 410 expired


@router.post("/invite/{token}", response_model=None)
def accept_invitation(
    token: str,
    request: Request,
    session: SessionDep,
    password: Annotated[str, Form(max_length=1024)] = "",
    csrf_token: Annotated[str, Form()] = "",
) -> Response:
    """Set the password, join the project, sign in."""
    expected = request.cookies.get(INVITE_CSRF_COOKIE, "")
    if not expected or not hmac.compare_digest(expected, csrf_token):
        error = "The form expired; reload the page and try again."
        return _invite_page(request, _invite_context(session, token, error), 403)
    try:
        user = accounts.accept_invitation(session=session, token=token, password=password)
    except DomainError as exc:
        return _invite_page(request, _invite_context(session, token, exc.message), exc.status_code)
    session.commit()
    with database_of(request).transaction(write=True) as db_session:
        cookie = create_session(session=db_session, user_id=user.id)
    response = redirect(request, "/account")
    set_session_cookie(request, response, cookie)
    return response
