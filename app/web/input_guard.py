"""What every route's input must be before the route sees it (issue 15: no input yields a 5xx).

One app-wide dependency, :func:`check_input`, run before each route's own parameters:

- **integers in paths and queries are ASCII digits** (``app.web.ints``): pydantic takes
  ``" 12"``, ``"+12"``, ``"1_000"`` and ``"12.0"`` as 12; every parameter typed ``int`` (or a
  list of them) is held to ``-?[0-9]+`` instead, answered 422 naming it;
- **JSON bodies hold finite numbers only, nested at most ``MAX_JSON_DEPTH`` deep**: Python's JSON
  parser reads ``NaN``, ``Infinity`` and ``1e999`` as floats, which the API cannot store or send
  back, and a body nested hundreds deep is stored but cannot be serialised again. Either is a 422
  naming the field (e.g. ``body.config.lr``), wherever it is, typed fields and free JSON alike.

The body check costs a few byte scans in C on the parsed-once body; the parsed document is only
walked when the bytes could hold a problem (a ``NaN``/``Infinity`` token, a three-digit exponent, a
100-digit number, or more opening brackets than the depth limit with a real depth over it).
"""

from __future__ import annotations

import math
import re
import types
from collections.abc import Iterator
from typing import Annotated, Any, Union, get_args, get_origin

from fastapi import Request
from fastapi.exceptions import RequestValidationError

from app.web.ints import ALLOWED, is_ascii_int

MAX_JSON_DEPTH = 32
JSON_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
NOT_FINITE = "must be a finite number (not NaN or Infinity, and within ±1.8e308)"
TOO_DEEP = f"nested deeper than {MAX_JSON_DEPTH} levels of arrays and objects"
NOT_UNICODE = "must be Unicode text (a lone surrogate escape, \\ud800-\\udfff without its pair, is not)"

# one byte-to-byte map then substring searches (a regex alternation scanned 45 KB in 6 ms): digits
# become "0", "e", "E" and "+" all "e", anything else a space; "e000" is then a three-digit exponent
# ("1e400" -> "0e000", "1e+400" -> "0ee000": one search for both) and 100 zeros a 100-digit number
_NUMBERS = bytes(48 if 48 <= b <= 57 else 101 if b in b"eE+" else 32 for b in range(256))
_NOT_BRACKETS_OR_QUOTES = bytes(b for b in range(256) if b not in b'[]{}"')
_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"')
_INNERMOST = re.compile(rb"\[\]|\{\}")
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_INT_PARAMS: dict[int, tuple[tuple[str, str], ...]] = {}
_BODY_CHECKED = "collapsewatch.body_may_be_bad"  # scope key: (the body, may_be_bad(body))


async def check_input(request: Request) -> None:
    """Refuse (422) non-ASCII integers in the path and query, and non-finite, too-deep or non-text
    (lone surrogate) JSON."""
    route = request.scope.get("route")
    if route is None:
        return
    for where, name in _int_params(route):
        values = [request.path_params.get(name)] if where == "path" else request.query_params.getlist(name)
        for value in values:
            if isinstance(value, str) and not is_ascii_int(value):
                raise _invalid([where, name], f"must be {ALLOWED}", value)
    if (
        request.method in JSON_METHODS
        and getattr(route, "body_field", None) is not None
        and _is_json(request)
    ):
        body = await request.body()  # read (and kept) by FastAPI already
        if body and request_body_may_be_bad(request, body):
            try:
                document = await request.json()  # parsed once already: cached on the request
            except (ValueError, RecursionError):  # FastAPI answered these itself
                return
            _check_document(document)


def _is_json(request: Request) -> bool:
    kind = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    return kind in ("", "application/json") or (kind.startswith("application/") and kind.endswith("+json"))


def _invalid(loc: list[Any], message: str, value: Any = None) -> RequestValidationError:
    error: dict[str, Any] = {"type": "value_error", "loc": tuple(loc), "msg": message}
    if value is not None:
        error["input"] = value
    return RequestValidationError([error])


# Integers in paths and queries ----------------------------------------------------------------


def _int_params(route: Any) -> tuple[tuple[str, str], ...]:
    """("path" | "query", name) of every parameter of the route typed int (cached per route)."""
    key = id(route)
    found = _INT_PARAMS.get(key)
    if found is None:
        dependant = getattr(route, "dependant", None)
        found = tuple(dict.fromkeys(_walk(dependant))) if dependant is not None else ()
        _INT_PARAMS[key] = found
    return found


def _walk(dependant: Any) -> Iterator[tuple[str, str]]:
    for where, params in (("path", dependant.path_params), ("query", dependant.query_params)):
        for param in params:
            if _is_int(param.field_info.annotation):
                yield where, param.alias
    for sub in dependant.dependencies:
        yield from _walk(sub)


def _is_int(annotation: Any) -> bool:
    if annotation is int:
        return True
    origin = get_origin(annotation)
    if origin is Annotated:
        return _is_int(get_args(annotation)[0])
    if origin in (Union, types.UnionType):
        return any(_is_int(arg) for arg in get_args(annotation) if arg is not type(None))
    if origin in (list, tuple, set, frozenset):
        args = get_args(annotation)
        return bool(args) and _is_int(args[0])
    return False


# JSON bodies ----------------------------------------------------------------------------------


def request_body_may_be_bad(request: Request, body: bytes) -> bool:
    """:func:`may_be_bad` of the request's body, worked out once per request (the ingestion routes'
    one-pass parser, ``app.api.fast_body``, asks first, then :func:`check_input`)."""
    found = request.scope.get(_BODY_CHECKED)
    if found is not None and found[0] is body:
        return bool(found[1])
    bad = may_be_bad(body)
    request.scope[_BODY_CHECKED] = (body, bad)
    return bad


def body_is_harmless(request: Request, body: bytes) -> None:
    """Record that ``body`` holds nothing the guard refuses (a model that refuses all of it by itself
    validated it: ``app.api.bodies.SELF_GUARDED``), so :func:`check_input` does not scan it."""
    request.scope[_BODY_CHECKED] = (body, False)


def may_be_bad(body: bytes) -> bool:
    """False when the raw bytes cannot hold a non-finite number, a too-deep nesting or a surrogate
    escape (``\\ud800``: valid JSON, a valid Python str, but not text that UTF-8 can store)."""
    if b"\x00" in body:  # UTF-16 or UTF-32 (json.loads reads them): the byte searches below would miss
        return True
    if (b"N" in body and b"NaN" in body) or (b"I" in body and b"Infinity" in body):  # memchr first
        return True
    if b"\\" in body and (b"\\ud" in body or b"\\uD" in body):
        return True
    numbers = body.translate(_NUMBERS)
    if b"e000" in numbers or b"0" * 100 in numbers:
        return True
    if body.count(b"[") + body.count(b"{") <= MAX_JSON_DEPTH:
        return False
    if b"\\" in body:  # escapes: strings found by the regex
        brackets = _STRING.sub(b"", body).translate(None, _NOT_BRACKETS)
    else:  # no escape: strings lie exactly between the odd and the even quotes
        marks = body.translate(None, _NOT_BRACKETS_OR_QUOTES)
        brackets = marks.replace(b'""', b"")  # strings without brackets (the usual case) vanish
        if b'"' in brackets:  # some string holds a bracket: drop the strings one by one
            brackets = b"".join(marks.split(b'"')[::2])
    for _ in range(MAX_JSON_DEPTH):  # each pass removes exactly one level
        brackets = _INNERMOST.sub(b"", brackets)
        if not brackets:
            return False
    return True


def _check_document(document: Any) -> None:
    """422 at the first non-finite number or the first value nested too deep (depth first)."""
    stack: list[tuple[Any, tuple[Any, ...]]] = [(document, ())]
    while stack:
        value, path = stack.pop()
        if isinstance(value, float):
            if not math.isfinite(value):
                raise _invalid(["body", *path], NOT_FINITE, _literal(value))
            continue
        if isinstance(value, str):
            if not _storable(value):
                raise _invalid(["body", *path], NOT_UNICODE)
            continue
        if isinstance(value, dict | list):
            if len(path) >= MAX_JSON_DEPTH:
                raise _invalid(["body", *path], TOO_DEEP)
            if isinstance(value, dict):
                for key in value:
                    if not _storable(key):
                        raise _invalid(["body", *path], f"a key {NOT_UNICODE}")
            items = value.items() if isinstance(value, dict) else enumerate(value)
            stack.extend((child, (*path, key)) for key, child in reversed(list(items)))


def _storable(text: str) -> bool:
    """True when ``text`` encodes as UTF-8 (no lone surrogate)."""
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _literal(value: float) -> str:
    return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
