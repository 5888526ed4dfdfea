"""Sign in (users with passwords) and sign out. Login forms are CSRF-protected by a double-submit
cookie (there is no session yet); failed logins are rate-limited per account (counted in the
database). Each request opens at most one write transaction, and never hashes inside it."""

from __future__ import annotations

import hmac
import secrets
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from app.auth import accounts
from app.auth.sessions import SESSION_COOKIE, create_session, end_session, verify_password
from app.deps import SessionDep, database_of
from app.pages.common import BrowserDep, check_csrf, render, set_session_cookie

router = APIRouter(include_in_schema=False)
LOGIN_CSRF_COOKIE = "cw_login_csrf"


def _safe_next(target: str) -> str:
    """Only same-site paths (no scheme, no //host) may be redirected to after login."""
    return (
        target if target.startswith("/") and not target.startswith("//") and "\\" not in target else "/runs"
    )


def _login_page(
    request: Request, *, email: str, next_url: str, error: str = "", status: int = 200
) -> Response:
    token = secrets.token_urlsafe(24)
    context = {"email": email, "next": _safe_next(next_url), "error": error, "login_csrf": token}
    response = render(request, None, "login.html", context, status_code=status)
    response.set_cookie(LOGIN_CSRF_COOKIE, token, httponly=True, samesite="strict", path="/login")
    return response


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request, next: str = "/runs") -> Response:
    return _login_page(request, email="", next_url=next)


@router.post("/login", response_model=None)
def login(
    request: Request,
    email: Annotated[str, Form(max_length=320)] = "",
    password: Annotated[str, Form(max_length=1024)] = "",
    csrf_token: Annotated[str, Form()] = "",
    next: Annotated[str, Form()] = "/runs",
) -> Response:
    expected = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    if not expected or not hmac.compare_digest(expected, csrf_token):
        return _login_page(
            request, email=email, next_url=next, error="The form expired; try again.", status=403
        )
    db = database_of(request)
    with db.session(write=False) as session:  # reads only: the Argon2 check runs outside any transaction
        blocked = accounts.login_blocked(session=session, account=email)
        user = None if blocked else accounts.find_user(session=session, email=email)
        found = (user.id, user.password_hash) if user is not None else None
    if blocked:
        return _login_page(
            request,
            email=email,
            next_url=next,
            error="Too many failed sign-ins for this account; wait 15 minutes and try again.",
            status=429,
        )
    user_id = found[0] if found is not None and verify_password(found[1], password) else None
    with db.transaction(write=True) as session:  # the request's one write transaction
        if user_id is None:
            accounts.record_login_failure(session=session, account=email)
            token = None
        else:
            accounts.clear_login_failures(session=session, account=email)
            token = create_session(session=session, user_id=user_id)
    if token is None:
        return _login_page(request, email=email, next_url=next, error="Wrong email or password.", status=401)
    response = RedirectResponse(_safe_next(next), status_code=303)
    set_session_cookie(request, response, token)
    response.delete_cookie(LOGIN_CSRF_COOKIE, path="/login")
    return response


@router.post("/logout")
def logout(
    request: Request, browser: BrowserDep, session: SessionDep, csrf_token: Annotated[str, Form()] = ""
) -> RedirectResponse:
    """End this browser's session on the server (its cookie is refused from now on), in the
    request's own write transaction: a second one would wait on SQLite for the lock this one holds."""
    check_csrf(request, browser, csrf_token)
    end_session(session=session, token=browser.session_token)
    session.commit()
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response
