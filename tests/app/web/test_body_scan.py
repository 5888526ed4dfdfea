"""``app.web.input_guard.may_be_bad``, the pre-scan that sends suspicious JSON bodies to the full check.

It may answer True for a body that is fine (the full check then passes it), never False for a body
holding a non-finite number or a too-deep nesting. The faster scan is compared with the previous
one, kept here verbatim, and with what the parsed document really holds.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from app.web.input_guard import MAX_JSON_DEPTH, may_be_bad

_NUMBERS = bytes(48 if 48 <= b <= 57 else 101 if b in b"eE" else 43 if b == 43 else 32 for b in range(256))
_NOT_BRACKETS_OR_QUOTES = bytes(b for b in range(256) if b not in b'[]{}"')
_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"')
_INNERMOST = re.compile(rb"\[\]|\{\}")
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


def previous_may_be_bad(body: bytes) -> bool:
    if b"NaN" in body or b"Infinity" in body:
        return True
    numbers = body.translate(_NUMBERS)
    if b"e000" in numbers or b"e+000" in numbers or b"0" * 100 in numbers:
        return True
    if body.count(b"[") + body.count(b"{") <= MAX_JSON_DEPTH:
        return False
    if b"\\" in body:
        brackets = _STRING.sub(b"", body).translate(None, _NOT_BRACKETS)
    else:
        brackets = b"".join(body.translate(None, _NOT_BRACKETS_OR_QUOTES).split(b'"')[::2])
    for _ in range(MAX_JSON_DEPTH):
        brackets = _INNERMOST.sub(b"", brackets)
        if not brackets:
            return False
    return True


def _depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    return 0


def _has_non_finite(value: Any) -> bool:
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, dict):
        return any(_has_non_finite(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_non_finite(v) for v in value)
    return False


TEXT = st.text(alphabet=st.sampled_from(list('ab[]{}"\\:,+eE0 9')), max_size=6)
LEAVES = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), TEXT)
DOCS = st.recursive(
    LEAVES,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(TEXT, inner, max_size=4)),
    max_leaves=60,
)


def _nest(doc: Any, levels: int) -> Any:
    for i in range(levels):
        doc = [doc] if i % 2 else {"k[": doc, "x": "]}"}
    return doc


@settings(max_examples=400, deadline=None)
@given(doc=DOCS, levels=st.integers(min_value=0, max_value=40), spaces=st.booleans())
def test_the_scan_never_passes_what_the_document_refuses(doc: Any, levels: int, spaces: bool) -> None:
    document = _nest(doc, levels)
    body = json.dumps(document, separators=(", ", ": ") if spaces else (",", ":")).encode()
    bad = _has_non_finite(document) or _depth(document) > MAX_JSON_DEPTH
    assert not bad or may_be_bad(body)
    assert may_be_bad(body) or not previous_may_be_bad(body)  # never more lenient than before


JSONISH = st.text(alphabet=st.sampled_from(list('[]{}"\\ab0e+E,:')), max_size=120).map(str.encode)


@settings(max_examples=400, deadline=None)
@given(body=st.binary(max_size=300) | JSONISH)
def test_the_scan_is_never_more_lenient_than_before_on_any_bytes(body: bytes) -> None:
    assert may_be_bad(body) or not previous_may_be_bad(body)


def test_exponents_and_long_numbers_are_suspicious() -> None:
    for text in (b'{"v": 1e400}', b'{"v": 1E+400}', b'{"v": -2e0308}', b'{"v": 1' + b"0" * 400 + b"}"):
        assert may_be_bad(text)
    assert not may_be_bad(b'{"v": 1e30, "w": 1.5e-05, "x": 12345678901234567890}')


def test_brackets_inside_strings_do_not_count_as_nesting() -> None:
    deep_text = json.dumps({"s": "[" * 100 + "{" * 100, "points": [{"k": "]"}] * 50}).encode()
    assert not may_be_bad(deep_text)
    assert may_be_bad(json.dumps(_nest(1, MAX_JSON_DEPTH + 1)).encode())
    assert not may_be_bad(json.dumps(_nest(1, MAX_JSON_DEPTH)).encode())
