"""Security headers on every response (a pure ASGI middleware: streams such as SSE pass untouched).

- ``Content-Security-Policy``: scripts and connections from this origin only (plotly.js is served
  from /static, no CDN; no inline script and no ``eval`` needed), inline *styles* allowed (Plotly
  sets style attributes), ``frame-ancestors 'none'``, no plugins, forms post here only.
  Downloads (``Content-Disposition: attachment``, e.g. the self-contained report export) get none:
  they are opened from disk, where their own inline scripts must run. /docs is a server-rendered
  page (app/pages/apidocs.py) under the same policy as every other page: no CDN anywhere.
- ``X-Frame-Options: DENY`` (older browsers), ``X-Content-Type-Options: nosniff``,
  ``Referrer-Policy: same-origin`` unless the route chose a stricter one (share pages:
  ``no-referrer``), ``Cross-Origin-Opener-Policy: same-origin``.
Headers a route set itself are never overwritten.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data: blob:; font-src 'self' data:; connect-src 'self'; object-src 'none'; "
    "base-uri 'self'; form-action 'self'; frame-ancestors 'none'"
)
STATIC: dict[bytes, bytes] = {
    b"x-frame-options": b"DENY",
    b"x-content-type-options": b"nosniff",
    b"referrer-policy": b"same-origin",
    b"cross-origin-opener-policy": b"same-origin",
}


def security_headers(path: str, present: dict[bytes, bytes]) -> list[tuple[bytes, bytes]]:
    """The headers to add to a response of ``path`` that already carries ``present`` (lower-case)."""
    added = [(name, value) for name, value in STATIC.items() if name not in present]
    if b"content-security-policy" not in present and not present.get(b"content-disposition", b"").startswith(
        b"attachment"
    ):
        added.append((b"content-security-policy", CSP.encode()))
    return added


class SecurityHeadersMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = str(scope.get("path", ""))

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers") or [])
                present = {bytes(name).lower(): bytes(value) for name, value in headers}
                message = {**message, "headers": headers + security_headers(path, present)}
            await send(message)

        await self.app(scope, receive, send_with_headers)
