"""Counts the write transactions each HTTP request opens (imported as ``txcount``).

An ASGI middleware gives every request a counter in a context variable; an engine ``begin``
listener adds one for each transaction begun on the write engine (``app.db.WRITE_OPTION``). The
thread pool copies the context into sync routes and dependencies, so their transactions count too.
"""

from __future__ import annotations

import contextvars
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI
from sqlalchemy import event

from app.db import WRITE_OPTION

_CURRENT: contextvars.ContextVar[list[int] | None] = contextvars.ContextVar("cw_write_tx", default=None)


@dataclass
class WriteCounter:
    """(method, path, write transactions) of every request served since the app was wrapped."""

    seen: list[tuple[str, str, int]] = field(default_factory=list)

    def over(self, limit: int = 1) -> list[tuple[str, str, int]]:
        return [row for row in self.seen if row[2] > limit]


def count_write_transactions(app: FastAPI) -> WriteCounter:
    """Install the counter on ``app`` (before it starts)."""
    counter = WriteCounter()

    @event.listens_for(app.state.db.engine, "begin")
    def _begin(conn: Any) -> None:
        box = _CURRENT.get()
        if box is not None and conn.get_execution_options().get(WRITE_OPTION, False):
            box[0] += 1

    class _PerRequest:
        def __init__(self, inner: Any) -> None:
            self.inner = inner

        async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
            if scope["type"] != "http":
                await self.inner(scope, receive, send)
                return
            box = [0]
            token = _CURRENT.set(box)
            try:
                await self.inner(scope, receive, send)
            finally:
                _CURRENT.reset(token)
                counter.seen.append((scope["method"], scope["path"], box[0]))

    app.add_middleware(_PerRequest)
    return counter
