"""Request body size limit (413), for declared and chunked (no Content-Length) bodies alike."""

from __future__ import annotations

import json
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class BodyLimitMiddleware:
    """Refuse bodies over ``max_bytes`` with 413 before the route reads or writes anything."""

    def __init__(self, app: ASGIApp, max_bytes: int, *, exempt_suffixes: tuple[str, ...] = ()) -> None:
        self.app = app
        self.max_bytes = max_bytes
        # Routes that enforce their own (larger) limit, e.g. checkpoint uploads.
        self.exempt_suffixes = exempt_suffixes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        exempt = bool(self.exempt_suffixes) and str(scope.get("path", "")).endswith(self.exempt_suffixes)
        if scope["type"] != "http" or exempt:
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._reject(send)
            return
        received = 0
        started = False
        rejected = False

        async def limited_receive() -> Message:
            nonlocal received, rejected
            if rejected:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes and not started:
                    # Answer 413 now; the app sees a disconnected client and its reply is dropped.
                    rejected = True
                    await self._reject(send)
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if rejected:
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        await self.app(scope, limited_receive, guarded_send)

    async def _reject(self, send: Send) -> None:
        message = f"request body is larger than {self.max_bytes} bytes; send smaller batches"
        body = json.dumps({"detail": message, "message": message}).encode()
        headers: list[Any] = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
        ]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": body})
