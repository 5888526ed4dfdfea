"""``app.api.fast_body``: a plainly valid ingestion body is validated once from its bytes; anything
else is left to FastAPI untouched, so its answers (422s, 413s) are the ones it always gave."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from starlette.requests import Request

from app.api.fast_body import prevalidate
from collapsewatch.contract import MetricBatchIn

VALID = json.dumps({"attempt": 1, "points": [{"key": "loss", "step": 3, "value": 0.5}]}).encode()


def _request(body: bytes, *, length: bool = True, kind: str = "application/json") -> Request:
    headers = [(b"content-type", kind.encode())]
    if length:
        headers.append((b"content-length", str(len(body)).encode()))
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    scope = {"type": "http", "method": "POST", "path": "/", "headers": headers, "query_string": b""}
    return Request(scope, receive)


def _parsed(request: Request) -> Any:
    asyncio.run(prevalidate(request, MetricBatchIn))
    return getattr(request, "_json", None)


def test_prevalidate_when_valid_leaves_the_model_for_fastapi() -> None:
    request = _request(VALID)
    parsed = _parsed(request)
    assert isinstance(parsed, MetricBatchIn) and parsed.points[0].step == 3
    assert asyncio.run(request.body()) == VALID  # the bytes stay readable


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (b'{"attempt": 1, "points": [{"key": "loss", "step": 3, "value": NaN}]}', "non-finite"),
        (b'{"attempt": 1, "points": [{"key": "loss", "step": 3, "value": 1e999}]}', "huge exponent"),
        (b'{"attempt": 0, "points": [{"key": "loss", "step": 3, "value": 1.0}]}', "invalid"),
        (b'{"attempt": 1, ', "malformed"),
    ],
)
def test_prevalidate_when_not_plainly_valid_leaves_fastapi_the_body(body: bytes, why: str) -> None:
    assert _parsed(_request(body)) is None, why


def test_prevalidate_when_chunked_or_not_json_does_not_read_the_body() -> None:
    chunked = _request(VALID, length=False)
    assert _parsed(chunked) is None and not hasattr(chunked, "_body")
    form = _request(VALID, kind="text/plain")
    assert _parsed(form) is None and not hasattr(form, "_body")
