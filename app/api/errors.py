"""Error responses: every 4xx says which field is wrong and what is allowed, never a 500."""

from __future__ import annotations

import logging
import math
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from sqlalchemy.exc import DataError, DBAPIError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from app.errors import DomainError, InvalidInput
from app.runs.storage import StoreError
from app.web.input_guard import TOO_DEEP, check_input
from app.web.templating import templates

log = logging.getLogger(__name__)
MAX_INPUT_REPR = 80
METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")
UNPARSABLE_BODY = "the body could not be read as UTF-8 JSON; send a JSON object encoded as UTF-8"
DB_RETRY_AFTER_S = 2
CONNECTION_MARKERS = ("connect", "server closed", "terminating", "shutting down", "starting up")
# a statement given up while it waited (SQLite's busy timeout; PostgreSQL: a cancel, a lock or
# statement timeout, a deadlock): nothing was written, the same request succeeds later
BUSY_MARKERS = ("database is locked", "canceling statement", "deadlock detected")


TITLES = {400: "Bad request", 401: "Sign in needed", 403: "Not allowed", 404: "Not found",
          405: "Method not allowed", 409: "Conflict", 410: "Gone", 413: "Too large", 422: "Invalid address",
          429: "Too many requests", 503: "Unavailable"}  # fmt: skip


def _wants_page(request: Request) -> bool:
    """A browser asking for a page (not the API, not a static file): errors come back as HTML."""
    path = request.url.path
    if request.method not in ("GET", "HEAD") or path.startswith(("/api/", "/static/")):
        return False
    return "text/html" in request.headers.get("accept", "")


def answer(
    request: Request, body: dict[str, Any], status: int, headers: dict[str, str] | None = None
) -> JSONResponse | HTMLResponse:
    """The JSON error, or for a browser's page request the same message on an HTML page."""
    if not _wants_page(request):
        return JSONResponse(body, status_code=status, headers=headers)
    message = body.get("message", "")
    if status == 404 and message == "Not Found":
        message = f"there is no page at {request.url.path}"
    context = {"status": status, "title": TITLES.get(status, "Error"), "message": message}
    page = templates.get_template("error.html").render(context)
    return HTMLResponse(page, status_code=status, headers=headers)


def _utf8(value: Any) -> Any:
    """``value`` with every string encodable as UTF-8: a lone surrogate (``"\\ud800"`` in the JSON)
    is valid JSON and a valid Python str, but cannot be written back out; it is shown escaped."""
    if isinstance(value, str):
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(value, list | tuple):
        return [_utf8(part) for part in value]
    if isinstance(value, dict):
        return {_utf8(key): _utf8(part) for key, part in value.items()}
    return value


def _where(loc: list[Any]) -> str:
    return ".".join(str(part) for part in loc) or "request"


def _item(error: dict[str, Any]) -> dict[str, Any]:
    loc = list(error.get("loc", ()))
    msg = str(error.get("msg", "invalid")).removeprefix("Value error, ")
    if error.get("type") == "json_invalid":
        ctx = error.get("ctx") or {}
        where = f" at character {loc[1]}" if len(loc) > 1 else ""
        msg = f"the body is not valid JSON{where} ({ctx.get('error', 'parse error')}); send a JSON object"
        loc = loc[:1]
    item: dict[str, Any] = {"loc": loc, "msg": msg, "type": error.get("type", "value_error")}
    value = error.get("input")
    if isinstance(value, float) and not math.isfinite(value):  # JSON cannot carry it back: say it
        value = "NaN" if value != value else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, str | int | float | bool) and len(repr(value)) <= MAX_INPUT_REPR:
        item["input"] = value
    return item


def _message(items: list[dict[str, Any]]) -> str:
    parts = []
    for item in items[:5]:
        got = f" (got {item['input']!r})" if "input" in item else ""
        parts.append(f"{_where(item['loc'])}: {item['msg']}{got}")
    more = f" (+{len(items) - 5} more)" if len(items) > 5 else ""
    return "; ".join(parts) + more


async def validation_error(request: Request, exc: Exception) -> JSONResponse | HTMLResponse:
    assert isinstance(exc, RequestValidationError)
    items = [_utf8(_item(dict(error))) for error in exc.errors()]
    return answer(request, {"detail": items, "message": _message(items)}, 422)


async def domain_error(request: Request, exc: Exception) -> JSONResponse | HTMLResponse:
    assert isinstance(exc, DomainError)
    if isinstance(exc, InvalidInput):
        items = [_utf8({"loc": exc.loc, "msg": exc.message, "type": "value_error"})]
        return answer(request, {"detail": items, "message": _message(items)}, 422)
    message = _utf8(exc.message)
    return answer(request, {"detail": message, "message": message}, exc.status_code)


def _allowed(request: Request) -> str:
    """Every method some route serves at this path (a 405 from one route names only its own)."""
    allowed = []
    for method in METHODS:
        scope = dict(request.scope, method=method)
        if any(route.matches(scope)[0] == Match.FULL for route in request.app.router.routes):
            allowed.append(method)
    return ", ".join(allowed)


async def http_error(request: Request, exc: Exception) -> JSONResponse | HTMLResponse:
    assert isinstance(exc, StarletteHTTPException)
    detail: Any = exc.detail
    headers = dict(exc.headers or {})
    if exc.status_code == 400 and detail == "There was an error parsing the body":
        if isinstance(exc.__cause__, RecursionError):  # nested past the parser's own limit
            items = [{"loc": ["body"], "msg": TOO_DEEP, "type": "value_error"}]
            return JSONResponse({"detail": items, "message": _message(items)}, status_code=422)
        detail = UNPARSABLE_BODY
    if exc.status_code == 405:
        headers["Allow"] = _allowed(request)
    message = detail if isinstance(detail, str) else "request refused"
    if exc.status_code == 422 and isinstance(detail, str):  # one shape for every 422
        detail = [{"loc": ["request"], "msg": detail, "type": "value_error"}]
    return answer(request, {"detail": detail, "message": message}, exc.status_code, headers)


async def out_of_range(_request: Request, exc: Exception) -> JSONResponse:
    """Safety net: a value the database cannot store is the client's error, not a 500."""
    message = "a number in the request is out of the range the server can store"
    if "NUL (0x00)" in str(exc):  # PostgreSQL text cannot hold NUL (SQLite can)
        message = "a text in the request contains a NUL character (\\u0000), which the server cannot store"
    items = [{"loc": ["body"], "msg": message, "type": "value_error"}]
    return JSONResponse({"detail": items, "message": message}, status_code=422)


async def database_unavailable(request: Request, exc: Exception) -> JSONResponse | HTMLResponse:
    """The database cannot be reached (restart, failover) or gave a statement up while it waited
    (:func:`is_busy_error`): 503 + Retry-After, never a 500.

    Only those (``connection_invalidated``, or an OperationalError/InterfaceError raised while
    connecting or waiting); any other database error is a bug and is re-raised.
    """
    assert isinstance(exc, DBAPIError)
    if is_connection_error(exc):
        message = f"the database is unavailable (restarting?); retry in {DB_RETRY_AFTER_S} s"
    elif is_busy_error(exc):
        message = f"the database is busy (a statement waited too long); retry in {DB_RETRY_AFTER_S} s"
    else:
        raise exc
    # answered, not raised: logged here, so that a lock that never clears leaves a trace
    log.warning("%s %s answered 503: %s", request.method, request.url.path, str(exc.orig).strip())
    headers = {"Retry-After": str(DB_RETRY_AFTER_S)}
    return answer(request, {"detail": message, "message": message}, 503, headers)


def is_connection_error(exc: DBAPIError) -> bool:
    if exc.connection_invalidated:
        return True
    return _operational(exc, CONNECTION_MARKERS)


def is_busy_error(exc: DBAPIError) -> bool:
    """A statement given up while it waited for a lock or its turn: SQLite's busy timeout,
    PostgreSQL's cancel, lock or statement timeout, or deadlock (its transaction was rolled back)."""
    return _operational(exc, BUSY_MARKERS)


def _operational(exc: DBAPIError, markers: tuple[str, ...]) -> bool:
    from sqlalchemy.exc import InterfaceError, OperationalError

    if not isinstance(exc, OperationalError | InterfaceError):
        return False
    text = str(exc.orig).lower()
    return any(marker in text for marker in markers)


async def store_unavailable(_request: Request, exc: Exception) -> JSONResponse:
    """The artifact store (an S3 bucket) cannot be reached: 503 + Retry-After, never a 500."""
    message = f"the artifact store is unavailable ({exc}); retry in {DB_RETRY_AFTER_S} s"
    headers = {"Retry-After": str(DB_RETRY_AFTER_S)}
    return JSONResponse({"detail": message, "message": message}, status_code=503, headers=headers)


def install(app: FastAPI) -> None:
    """The error answers, and the app-wide input check (``app.web.input_guard``: ASCII integers,
    finite and not too deeply nested JSON). Call it before the routers are included: a router's
    routes take the app router's dependencies when they are included."""
    if Depends(check_input) not in app.router.dependencies:
        app.router.dependencies.append(Depends(check_input))
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(DomainError, domain_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(OverflowError, out_of_range)
    app.add_exception_handler(DataError, out_of_range)
    app.add_exception_handler(DBAPIError, database_unavailable)
    app.add_exception_handler(StoreError, store_unavailable)
