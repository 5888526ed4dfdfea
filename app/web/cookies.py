"""The cookie-session auth backend that lets pages call the JSON API and SSE streams.

Cookie-authenticated API calls are read-only unless they carry the session's CSRF token in the
``X-CSRF-Token`` header; bearer tokens are unaffected.
"""

from __future__ import annotations

from fastapi import HTTPException, Request

from app.auth.sessions import CSRF_HEADER, SESSION_COOKIE, csrf_valid, resolve_session
from app.auth.tokens import Principal
from app.deps import READ_METHODS, lookup_session


def cookie_backend(request: Request) -> Principal | None:
    """The ``cw_session`` cookie -> the signed-in user (None without a valid session cookie).

    Unsafe methods also need the session's CSRF token in ``X-CSRF-Token`` (403 otherwise)."""
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        return None
    with lookup_session(request) as session:
        user = resolve_session(session=session, token=token)
        principal = Principal(user_id=user.id, kind="session", is_admin=user.is_admin) if user else None
    if principal is None:
        return None
    if request.method not in READ_METHODS:
        secret = request.app.state.settings.resolved_secret_key()
        if not csrf_valid(secret, token, request.headers.get(CSRF_HEADER)):
            raise HTTPException(403, detail=f"cookie-authenticated writes need the {CSRF_HEADER} header")
    return principal
