"""Error responses: every 4xx says which field is wrong and what is allowed, never a 500."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DataError
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.services.errors import DomainError, InvalidInput

MAX_INPUT_REPR = 80


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
    if isinstance(value, str | int | float | bool) and len(repr(value)) <= MAX_INPUT_REPR:
        item["input"] = value if not isinstance(value, float) or value == value else "NaN"
    return item


def _message(items: list[dict[str, Any]]) -> str:
    parts = []
    for item in items[:5]:
        got = f" (got {item['input']!r})" if "input" in item else ""
        parts.append(f"{_where(item['loc'])}: {item['msg']}{got}")
    more = f" (+{len(items) - 5} more)" if len(items) > 5 else ""
    return "; ".join(parts) + more


async def validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    items = [_item(dict(error)) for error in exc.errors()]
    return JSONResponse({"detail": items, "message": _message(items)}, status_code=422)


async def domain_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, DomainError)
    if isinstance(exc, InvalidInput):
        items = [{"loc": exc.loc, "msg": exc.message, "type": "value_error"}]
        return JSONResponse({"detail": items, "message": _message(items)}, status_code=422)
    return JSONResponse({"detail": exc.message, "message": exc.message}, status_code=exc.status_code)


async def http_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    message = exc.detail if isinstance(exc.detail, str) else "request refused"
    return JSONResponse(
        {"detail": exc.detail, "message": message}, status_code=exc.status_code, headers=exc.headers
    )


async def out_of_range(_request: Request, _exc: Exception) -> JSONResponse:
    """Safety net: a number the database cannot store is the client's error, not a 500."""
    message = "a number in the request is out of the range the server can store"
    return JSONResponse({"detail": message, "message": message}, status_code=422)


def install(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(DomainError, domain_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(OverflowError, out_of_range)
    app.add_exception_handler(DataError, out_of_range)
