"""Browser plumbing: static files (plotly.js from the installed plotly package, no CDN) and the
cookie-session auth backend that lets pages call the JSON API and SSE streams.

Cookie-authenticated API calls are read-only unless they carry the session's CSRF token in the
``X-CSRF-Token`` header; bearer tokens are unaffected.
"""

from __future__ import annotations

import mimetypes
from functools import lru_cache
from pathlib import Path

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import FileResponse

from app.deps import READ_METHODS, lookup_session
from app.security import Principal
from app.web_auth import CSRF_HEADER, SESSION_COOKIE, csrf_valid, resolve_session

STATIC_DIR = Path(__file__).resolve().parent / "static"
STATIC_CACHE = "public, max-age=3600"

router = APIRouter(include_in_schema=False)


@lru_cache(maxsize=1)
def plotly_js_path() -> Path:
    """``plotly/package_data/plotly.min.js`` of the installed plotly package."""
    import plotly

    path = Path(plotly.__file__).resolve().parent / "package_data" / "plotly.min.js"
    if not path.is_file():  # pragma: no cover - a broken plotly install
        raise RuntimeError(f"plotly.min.js not found at {path}; reinstall the plotly package")
    return path


@router.get("/static/plotly.min.js")
def plotly_js() -> FileResponse:
    return FileResponse(
        plotly_js_path(), media_type="text/javascript", headers={"Cache-Control": "public, max-age=86400"}
    )


@router.get("/static/{name}")
def static_file(name: str) -> FileResponse:
    """The dashboard's own CSS/JS (flat directory; nothing outside it is reachable)."""
    path = (STATIC_DIR / name).resolve()
    if path.parent != STATIC_DIR or not path.is_file():
        raise HTTPException(404, detail=f"no static file {name!r}")
    media_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    return FileResponse(path, media_type=media_type, headers={"Cache-Control": STATIC_CACHE})


def cookie_backend(request: Request) -> Principal | None:
    """The ``cw_session`` cookie -> the signed-in user (None without a valid session cookie).

    Unsafe methods also need the session's CSRF token in ``X-CSRF-Token`` (403 otherwise)."""
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        return None
    with lookup_session(request) as session:
        user = resolve_session(session, token=token)
        principal = Principal(user_id=user.id, kind="session", is_admin=user.is_admin) if user else None
    if principal is None:
        return None
    if request.method not in READ_METHODS:
        secret = request.app.state.settings.resolved_secret_key()
        if not csrf_valid(secret, token, request.headers.get(CSRF_HEADER)):
            raise HTTPException(403, detail=f"cookie-authenticated writes need the {CSRF_HEADER} header")
    return principal
