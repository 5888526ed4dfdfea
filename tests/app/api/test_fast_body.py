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


# A self-guarded body (app.api.bodies.SELF_GUARDED) skips the input guard's scans once valid: that is
# only sound if validity implies that the guard's own check of the parsed document finds nothing.
HOSTILE = [
    b"NaN", b"-NaN", b"Infinity", b"-Infinity", b"1e999", b"-1e400", b"1E+400", b"1" + b"0" * 400,
    b'"\\ud800"', b'"a\\udfffb"', b'"\\u0000"', b"[" * 40 + b"1" + b"]" * 40,
    b'{"a": ' * 40 + b"1" + b"}" * 40, b'{"key": "loss", "step": 1, "value": NaN}', b"null", b"true",
    b'"loss"', b"1.5", b"0", b"-1", b"[]", b"{}",
]  # fmt: skip
SLOTS = ("attempt", "key", "step", "value", "extra", "point_extra")


def _body(fill: dict[str, bytes]) -> bytes:
    point = b'{"key": %s, "step": %s, "value": %s%s}' % (
        fill.get("key", b'"loss"'),
        fill.get("step", b"3"),
        fill.get("value", b"0.5"),
        b', "x": ' + fill["point_extra"] if "point_extra" in fill else b"",
    )
    extra = b', "x": ' + fill["extra"] if "extra" in fill else b""
    return b'{"attempt": %s, "points": [%s, %s]%s}' % (fill.get("attempt", b"1"), point, point, extra)


def _harmless_if_valid(body: bytes) -> None:
    from pydantic import ValidationError

    from app.api.bodies import SELF_GUARDED
    from app.web.input_guard import _check_document

    for model in SELF_GUARDED:
        try:
            model.model_validate_json(body)
        except ValidationError:
            continue
        _check_document(json.loads(body))  # raises the guard's 422 if the valid body were harmful


@pytest.mark.parametrize("slot", SLOTS)
@pytest.mark.parametrize("value", HOSTILE, ids=lambda v: v[:12].decode(errors="replace"))
def test_a_self_guarded_model_refuses_whatever_the_guard_refuses(slot: str, value: bytes) -> None:
    body = _body({slot: value})
    _harmless_if_valid(body)
    _harmless_if_valid(body.decode().encode("utf-16"))  # json.loads reads UTF-16; the model must not


def test_a_self_guarded_model_with_hostile_values_in_every_slot_at_once() -> None:
    from hypothesis import given, settings
    from hypothesis import strategies as st

    @settings(max_examples=300, deadline=None)
    @given(st.dictionaries(st.sampled_from(SLOTS), st.sampled_from(HOSTILE)))
    def check(fill: dict[str, bytes]) -> None:
        _harmless_if_valid(_body(fill))

    check()


def test_a_valid_metrics_batch_is_not_scanned_and_a_bad_one_still_is(monkeypatch: pytest.MonkeyPatch) -> None:
    from app.api.bodies import MetricBatchRows
    from app.web import input_guard

    scans: list[bytes] = []
    real = input_guard.may_be_bad
    monkeypatch.setattr(input_guard, "may_be_bad", lambda body: scans.append(body) or real(body))
    request = _request(VALID)
    asyncio.run(prevalidate(request, MetricBatchRows))
    assert isinstance(request._json, MetricBatchRows) and scans == []
    body = asyncio.run(request.body())  # the bytes check_input asks about
    assert input_guard.request_body_may_be_bad(request, body) is False and scans == []
    nan = b'{"attempt": 1, "points": [{"key": "loss", "step": 3, "value": NaN}]}'
    request = _request(nan)
    asyncio.run(prevalidate(request, MetricBatchRows))
    assert getattr(request, "_json", None) is None
    assert input_guard.request_body_may_be_bad(request, asyncio.run(request.body())) is True
    assert scans == [nan]  # scanned once: by prevalidate, remembered for check_input
