"""Integers typed by people: ASCII digits only.

Python's ``int()`` (and ``str.isdigit``) accept every Unicode digit: ``"²".isdigit()`` is true but
``int("²")`` raises, and ``int("١٢")`` is 12. Query values and path segments are parsed here
instead, so that ``/compare?runs=²`` or ``①`` is refused (4xx) rather than crashing (500) or
meaning something the user did not type.
"""

from __future__ import annotations

import re

ASCII_INT = re.compile(r"-?[0-9]{1,30}")
ASCII_NATURAL = re.compile(r"[0-9]{1,30}")
ALLOWED = "an integer written with the ASCII digits 0-9"


def is_ascii_int(text: str, *, signed: bool = True) -> bool:
    """Whether ``text`` is exactly an (optionally negative) integer in ASCII digits."""
    return (ASCII_INT if signed else ASCII_NATURAL).fullmatch(text) is not None


def parse_natural(text: str) -> int | None:
    """``text`` as a non-negative integer when it is written with ASCII digits only, else None."""
    return int(text) if is_ascii_int(text, signed=False) else None
