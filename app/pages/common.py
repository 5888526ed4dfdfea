"""What every page shares: the Jinja2 environment, the signed-in browser, CSRF checks, responses.

``BrowserDep`` resolves the ``cw_session`` cookie to a user; without one it either signs the
browser in as the local admin (local mode, see :func:`autologin_enabled`) or redirects to /login.
A session created during the request is attached to the response by :func:`render` / :func:`redirect`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import Depends, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from app.auth.api_tokens import ensure_admin
from app.auth.roles import Actor
from app.auth.sessions import (
    SESSION_COOKIE,
    SESSION_TTL,
    create_session,
    csrf_token,
    csrf_valid,
    resolve_session,
)
from app.deps import SessionDep, side_write
from app.settings import Settings
from app.web.templating import templates


def autologin_enabled(settings: Settings) -> bool:
    """Local mode: ``LOCAL_AUTOLOGIN`` when set, else on for the embedded SQLite set-up only."""
    explicit = settings.local_autologin
    return settings.is_sqlite if explicit is None else explicit


@dataclass(frozen=True)
class Browser:
    user_id: int
    email: str
    is_admin: bool
    session_token: str
    csrf: str
    local_mode: bool

    @property
    def actor(self) -> Actor:
        """The browser's user for permission checks (app.auth.roles)."""
        return Actor(self.user_id, self.is_admin)


def _login_redirect(request: Request) -> HTTPException:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return HTTPException(303, detail="sign in first", headers={"Location": f"/login?next={quote(target)}"})


def get_browser(request: Request, session: SessionDep) -> Browser:
    """The signed-in user, looked up in the request's session (pages always open one, so a page
    costs one pooled connection and one transaction)."""
    settings: Settings = request.app.state.settings
    token = request.cookies.get(SESSION_COOKIE)
    local = autologin_enabled(settings)
    user = resolve_session(session=session, token=token)
    found = (user.id, user.email, user.is_admin) if user is not None else None
    if found is None:
        if not local:
            raise _login_redirect(request)
        with side_write(request) as writer:
            admin = ensure_admin(session=writer, email=settings.admin_email)
            token = create_session(session=writer, user_id=admin.id)
            found = (admin.id, admin.email, admin.is_admin)
        request.state.new_session_token = token
    assert token is not None
    secret = settings.resolved_secret_key()
    return Browser(found[0], found[1], found[2], token, csrf_token(secret, token), local)


BrowserDep = Annotated[Browser, Depends(get_browser)]


def check_csrf(request: Request, browser: Browser, submitted: str | None) -> None:
    """403 unless the form carried this session's CSRF token."""
    secret = request.app.state.settings.resolved_secret_key()
    if not csrf_valid(secret, browser.session_token, submitted):
        raise HTTPException(403, detail="invalid or missing CSRF token; reload the page and try again")


def attach_session(request: Request, response: Response) -> Response:
    token: str | None = getattr(request.state, "new_session_token", None)
    if token:
        set_session_cookie(request, response, token)
    return response


def set_session_cookie(request: Request, response: Response, token: str) -> None:
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=int(SESSION_TTL.total_seconds()),
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
        path="/",
    )


def render(
    request: Request,
    browser: Browser | None,
    name: str,
    context: dict[str, Any],
    *,
    status_code: int = 200,
) -> HTMLResponse:
    base: dict[str, Any] = {
        "user": browser,
        "csrf": browser.csrf if browser else "",
        "local_mode": browser.local_mode if browser else False,
        "flashes": [],
    }
    response = templates.TemplateResponse(request, name, base | context, status_code=status_code)
    attach_session(request, response)
    return response


def redirect(request: Request, url: str) -> RedirectResponse:
    response = RedirectResponse(url, status_code=303)
    attach_session(request, response)
    return response
