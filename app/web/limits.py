"""Request body size limits (413) through the framework: Starlette's ``RequestBodyLimitMiddleware``.

- :func:`install` adds it app-wide with ``MAX_BODY_BYTES``; it counts declared (Content-Length) and
  chunked bodies alike, and a route never reads more than the limit.
- A router that takes bigger bodies (checkpoint uploads: ``MAX_CHECKPOINT_BYTES``) is included with
  FastAPI's ``include_router(..., max_body_size=...)``, which overrides the app-wide limit for its
  routes (Starlette hands the larger limit to the app-wide counter of that request).

Kept here, with the reason:

- A declared Content-Length over the route's limit is refused before the route runs. Starlette
  enforces the limit when the body is read, so a route that never reads its body (``POST
  /runs/{id}/cancel``) would run — the cancel would be done — and only its answer be replaced by a
  413. DESIGN.md §5: an oversized request writes nothing. The per-route limits are the same
  settings FastAPI gets (``route_limits``: path suffix -> bytes).
- The 413's body: Starlette's ``HTTPException(413, "Content Too Large")`` (raised while a route
  reads a chunked body past the limit) becomes the API's JSON error with the limit and the setting
  to change (:func:`body_too_large`), as every API error must (DESIGN.md §5).

The middleware is added with ``add_middleware`` rather than ``FastAPI(max_body_size=...)`` so that it
sits inside :class:`app.web.headers.SecurityHeadersMiddleware`: FastAPI puts its app-wide limit
outside every user middleware, and a 413 sent from there would go out without the security headers.
"""

from __future__ import annotations

import json

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.middleware.body_limit import MAX_BODY_SIZE_SCOPE_KEY, RequestBodyLimitMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

# path suffix -> what to do about a body over that route's limit
HINTS = {
    "/checkpoint": "raise MAX_CHECKPOINT_BYTES or save less state",
    "/datasets": "raise MAX_DATASET_BYTES or register the file by reference under a worker data root",
}
DEFAULT_HINT = "send smaller batches (the limit is MAX_BODY_BYTES)"


def too_large_message(path: str, limit: object) -> str:
    hint = next((h for suffix, h in HINTS.items() if path.endswith(suffix)), DEFAULT_HINT)
    size = f"larger than {limit} bytes" if isinstance(limit, int) else "too large"
    return f"request body is {size}; {hint}"


async def body_too_large(request: Request, exc: Exception) -> JSONResponse:
    """413 in the API's error shape, naming the route's limit and what to do."""
    assert isinstance(exc, HTTPException)
    if exc.detail in (None, "", "Content Too Large"):
        message = too_large_message(request.url.path, request.scope.get(MAX_BODY_SIZE_SCOPE_KEY))
    else:
        message = str(exc.detail)
    return JSONResponse({"detail": message, "message": message}, status_code=413, headers=exc.headers)


class BodyLimit:
    """Starlette's ``RequestBodyLimitMiddleware`` (it counts every body, chunked ones too), after a
    refusal of a declared Content-Length over the route's limit, before the route runs."""

    def __init__(self, app: ASGIApp, max_body_size: int, route_limits: dict[str, int] | None = None) -> None:
        self.app = RequestBodyLimitMiddleware(app, max_body_size=max_body_size)
        self.max_body_size = max_body_size
        self.route_limits = dict(route_limits or {})

    def limit(self, path: str) -> int:
        return next(
            (n for suffix, n in self.route_limits.items() if path.endswith(suffix)), self.max_body_size
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path = str(scope.get("path", ""))
            declared = dict(scope.get("headers") or []).get(b"content-length", b"")
            limit = self.limit(path)
            if declared.isdigit() and int(declared) > limit:
                text = too_large_message(path, limit)
                body = json.dumps({"detail": text, "message": text}).encode()
                await send({"type": "http.response.start", "status": 413, "headers": [
                    (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ]})  # fmt: skip
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)


def install(app: FastAPI, max_bytes: int, route_limits: dict[str, int] | None = None) -> None:
    """Limit every request body to ``max_bytes``, or ``route_limits[suffix]`` for the paths ending so
    (include those routers with the same ``max_body_size``); add before the security headers."""
    app.add_middleware(BodyLimit, max_body_size=max_bytes, route_limits=route_limits)
    app.add_exception_handler(413, body_too_large)
