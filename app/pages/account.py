"""The account page (personal API tokens: create, shown once, revoke, last use; password change,
which signs every other session of the account out) and the invitation page: a new email creates
its account there; an existing account signs in with its own password and then accepts
(``app.auth.invitations``: a link never signs anyone in as, or changes, an existing account)."""

from __future__ import annotations

import hmac
import secrets
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy.orm import Session

from app.auth import accounts, invitations, projects, roles
from app.auth.sessions import (
    SESSION_COOKIE,
    create_session,
    csrf_valid,
    hash_password,
    resolve_session,
)
from app.auth.sessions import csrf_token as session_csrf
from app.deps import SessionDep, database_of
from app.errors import DomainError
from app.models import Project, User
from app.pages.common import (
    Browser,
    BrowserDep,
    autologin_enabled,
    check_csrf,
    redirect,
    render,
    set_session_cookie,
)

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
    page = _account_page(request, browser, session, new_token=new.token)  # read before the commit:
    session.commit()  # a read after it would begin a second (write) transaction on this session
    return page


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


def _password_browser(request: Request) -> Browser:
    """The signed-in browser, looked up in a short read-only session (no request session): the
    password change hashes with Argon2id before it opens its one, short write transaction."""
    settings = request.app.state.settings
    token = request.cookies.get(SESSION_COOKIE)
    with database_of(request).session(write=False) as session:
        user = resolve_session(session=session, token=token)
        found = (user.id, user.email, user.is_admin) if user is not None else None
    if found is None or token is None:
        raise HTTPException(
            303, detail="sign in first", headers={"Location": f"/login?next={quote('/account')}"}
        )
    secret = settings.resolved_secret_key()
    local = autologin_enabled(settings)
    return Browser(found[0], found[1], found[2], token, session_csrf(secret, token), local)


@router.post("/account/password", response_class=HTMLResponse)
def change_password(
    request: Request,
    browser: Annotated[Browser, Depends(_password_browser)],
    current_password: Annotated[str, Form(max_length=1024)] = "",
    new_password: Annotated[str, Form(max_length=1024)] = "",
    csrf_token: Annotated[str, Form()] = "",
) -> HTMLResponse:
    """Check the current password, set the new one and end every other session of the account
    (this browser stays signed in). API tokens are listed on the page, to revoke any not trusted."""
    check_csrf(request, browser, csrf_token)
    db = database_of(request)
    with db.session(write=False) as session:
        user = session.get(User, browser.user_id)
        current_hash = user.password_hash if user is not None else None
    try:
        new_hash = accounts.new_password_hash(
            current_hash=current_hash, current=current_password, new=new_password
        )
        assert current_hash is not None  # new_password_hash refuses an account without one
        with db.transaction(write=True) as session:
            ended = accounts.set_password_hash(
                session=session,
                user_id=browser.user_id,
                expected_hash=current_hash,
                new_hash=new_hash,
                keep_session=browser.session_token,
            )
    except DomainError as exc:
        with db.session(write=False) as session:
            return _account_page(request, browser, session, error=exc.message, status_code=exc.status_code)
    others = f"{ended} other session{'s' if ended != 1 else ''} signed out"
    message = f"Password changed; {others}. Your API tokens still work: revoke any you no longer trust below."
    with db.session(write=False) as session:
        return _account_page(request, browser, session, message=message)


def _invite_page(request: Request, context: dict[str, Any], status_code: int = 200) -> HTMLResponse:
    """The form carries a double-submit CSRF token (no session exists yet), as the login form."""
    form_token = secrets.token_urlsafe(24)
    context = {"form_csrf": form_token} | context
    response = render(request, None, "invite.html", context, status_code=status_code)
    response.headers.update(NO_STORE)
    response.set_cookie(INVITE_CSRF_COOKIE, form_token, httponly=True, samesite="strict", path="/invite")
    return response


def _signed_in(request: Request, session: Session) -> User | None:
    """The account this browser is signed in as, if any (never the local-mode auto sign-in: an
    invitation page must not make anyone the local admin)."""
    return resolve_session(session=session, token=request.cookies.get(SESSION_COOKIE))


def _invite_context(request: Request, session: Session, token: str, error: str) -> dict[str, Any]:
    """The page's context: the invitation while it is open (a password form for a new account, or
    "sign in as that account" / an accept button for an existing one), else only the reason."""
    admin_email = request.app.state.settings.admin_email
    try:
        pending = invitations.open_invitation(session=session, token=token, local_admin_email=admin_email)
    except DomainError as exc:
        return {"error": error or exc.message, "invitation": None, "status": exc.status_code}
    user = _signed_in(request, session)
    secret = request.app.state.settings.resolved_secret_key()
    session_token = request.cookies.get(SESSION_COOKIE, "")
    return {
        "error": error,
        "invitation": pending.invitation,
        "existing": pending.existing_account,
        "signed_in": user.email if user is not None else None,
        "is_invitee": user is not None and user.email.lower() == pending.invitation.email,
        "session_csrf": session_csrf(secret, session_token) if user is not None else "",
        "login_url": f"/login?next={quote('/invite/' + token)}",
        "token": token,
        "status": 200,
    }


@router.get("/invite/{token}", response_class=HTMLResponse)
def invitation(token: str, request: Request, session: SessionDep) -> HTMLResponse:
    context = _invite_context(request, session, token, "")
    return _invite_page(request, context, context["status"])  # 404 unknown or used, 410 expired


@router.post("/invite/{token}", response_model=None)
def accept_as_new_account(
    token: str,
    request: Request,
    session: SessionDep,
    password: Annotated[str, Form(max_length=1024)] = "",
    csrf_token: Annotated[str, Form()] = "",
) -> Response:
    """A new email: create its account with this password, join the project, sign in. An email
    that has an account (or the local admin's) is refused: that account signs in and accepts."""
    expected = request.cookies.get(INVITE_CSRF_COOKIE, "")
    if not expected or not hmac.compare_digest(expected, csrf_token):
        error = "The form expired; reload the page and try again."
        return _invite_page(request, _invite_context(request, session, token, error), 403)
    try:
        password_hash = hash_password(accounts.check_password(password))  # before the transaction
        user = invitations.accept_as_new_account(
            session=session,
            token=token,
            password_hash=password_hash,
            local_admin_email=request.app.state.settings.admin_email,
        )
        cookie = create_session(session=session, user_id=user.id)
    except DomainError as exc:
        return _invite_page(request, _invite_context(request, session, token, exc.message), exc.status_code)
    session.commit()  # the account, the membership and the session: one write transaction
    response = redirect(request, "/account")
    set_session_cookie(request, response, cookie)
    return response


@router.post("/invite/{token}/accept", response_model=None)
def accept_as_member(
    token: str,
    request: Request,
    session: SessionDep,
    csrf_token: Annotated[str, Form()] = "",
) -> Response:
    """An existing account, signed in with its own password, accepts an invitation to its email."""
    user = _signed_in(request, session)
    if user is None:
        return RedirectResponse(f"/login?next={quote('/invite/' + token)}", status_code=303)
    secret = request.app.state.settings.resolved_secret_key()
    if not csrf_valid(secret, request.cookies.get(SESSION_COOKIE), csrf_token):
        error = "The form expired; reload the page and try again."
        return _invite_page(request, _invite_context(request, session, token, error), 403)
    try:
        accepted = invitations.accept_as_member(
            session=session,
            token=token,
            user_id=user.id,
            local_admin_email=request.app.state.settings.admin_email,
        )
        project = session.get(Project, accepted.project_id) if accepted.project_id is not None else None
        target = f"/projects/{project.name}" if project is not None else "/account"
    except DomainError as exc:
        return _invite_page(request, _invite_context(request, session, token, exc.message), exc.status_code)
    session.commit()
    return RedirectResponse(target, status_code=303)
