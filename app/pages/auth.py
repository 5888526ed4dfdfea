"""Sign in (users with passwords) and sign out. Login forms are CSRF-protected by a double-submit
cookie (there is no session yet); failed logins are rate-limited per account."""

from __future__ import annotations

import hmac
import secrets
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from app.auth.sessions import SESSION_COOKIE, LoginLimiter, authenticate, create_session, end_session
from app.deps import database_of
from app.pages.common import BrowserDep, check_csrf, render, set_session_cookie

router = APIRouter(include_in_schema=False)
LOGIN_CSRF_COOKIE = "cw_login_csrf"


def _limiter(request: Request) -> LoginLimiter:
    limiter: LoginLimiter | None = getattr(request.app.state, "login_limiter", None)
    if limiter is None:  # failures live in the database: the limit holds across processes
        from app.auth.accounts import DbLoginLimiter

        limiter = request.app.state.login_limiter = DbLoginLimiter(database_of(request))
    return limiter


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
    limiter = _limiter(request)
    if limiter.blocked(email):
        return _login_page(
            request,
            email=email,
            next_url=next,
            error="Too many failed sign-ins for this account; wait 15 minutes and try again.",
            status=429,
        )
    db = database_of(request)
    with db.session(write=False) as session:  # the limiter records failures in its own transaction
        user = authenticate(session=session, email=email, password=password, limiter=limiter)
        user_id = user.id if user is not None else None
    token = None
    if user_id is not None:
        with db.transaction(write=True) as session:
            token = create_session(session=session, user_id=user_id)
    if token is None:
        return _login_page(request, email=email, next_url=next, error="Wrong email or password.", status=401)
    response = RedirectResponse(_safe_next(next), status_code=303)
    set_session_cookie(request, response, token)
    response.delete_cookie(LOGIN_CSRF_COOKIE, path="/login")
    return response


@router.post("/logout")
def logout(
    request: Request, browser: BrowserDep, csrf_token: Annotated[str, Form()] = ""
) -> RedirectResponse:
    check_csrf(request, browser, csrf_token)
    with database_of(request).transaction(write=True) as session:
        end_session(session=session, token=browser.session_token)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response
