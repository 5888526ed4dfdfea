"""Ingestion bodies parsed and validated in one pass (issue 19).

FastAPI reads a JSON body with ``json.loads`` into dicts and lists, then validates those with the
route's model: for a 1,000-point metrics batch the two steps cost twice what pydantic's own
``model_validate_json`` on the raw bytes does. :class:`FastBodyRoute` (the ingestion router's
``route_class``) tries that one pass first and hands FastAPI the validated model, which FastAPI's
own validation then passes through unchanged (an instance of the model is not validated again).
Where ``app.api.bodies.FASTER`` names a cheaper subclass of the declared model, the body is parsed
into that (the route reads either shape).

Only the plain success is taken this way. Anything else goes the usual way, unchanged, so every
error is the one FastAPI gave before (same 422s, same locations and messages): a body that is not
declared JSON, has no Content-Length (a chunked body: the size limit is enforced as it is read, and
a 413 comes from there), could hold a non-finite number or a too-deep nesting
(``app.web.input_guard``, which then checks the parsed document), or does not validate. A model of
``app.api.bodies.SELF_GUARDED`` refuses all of what the guard looks for by itself: its body is
validated first and, when valid, spared the guard's scans.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute
from pydantic import BaseModel, ValidationError

from app.api.bodies import FASTER, SELF_GUARDED
from app.web.input_guard import body_is_harmless, request_body_may_be_bad

Handler = Callable[[Request], Coroutine[Any, Any, Response]]


class FastBodyRoute(APIRoute):
    """An ``APIRoute`` whose JSON model body is validated straight from its bytes when it is valid."""

    def get_route_handler(self) -> Handler:
        handler = super().get_route_handler()
        field = self.body_field
        model = getattr(field, "field_info", None) and field.field_info.annotation  # type: ignore[union-attr]
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            return handler
        body_model: type[BaseModel] = FASTER.get(model, model)  # a cheaper subclass, if there is one

        async def parse_first(request: Request) -> Response:
            await prevalidate(request, body_model)
            return await handler(request)

        return parse_first


async def prevalidate(request: Request, model: type[BaseModel]) -> None:
    """Leave the validated ``model`` where ``Request.json()`` finds it, when the body is plainly valid."""
    if request.headers.get("content-length") is None or not _declared_json(request):
        return
    try:
        body = await request.body()  # kept by the request: FastAPI reads the same bytes
    except Exception:  # a disconnect: FastAPI meets it again and answers as before
        return
    guarded = model in SELF_GUARDED  # valid means harmless: no scan first
    if not body or (not guarded and request_body_may_be_bad(request, body)):
        return
    try:
        parsed = model.model_validate_json(body)
    except ValidationError:
        return
    if guarded:
        body_is_harmless(request, body)  # app.web.input_guard's check_input skips it too
    request._json = parsed  # Starlette's cache of the parsed body (Request.json returns it)


def _declared_json(request: Request) -> bool:
    kind = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    return kind == "application/json" or (kind.startswith("application/") and kind.endswith("+json"))
