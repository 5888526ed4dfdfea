"""CSV that a spreadsheet opens as data, never as formulas (OWASP "CSV Injection").

Every CSV the server writes goes through :func:`writer`. Text cells that begin with ``=``, ``+``,
``-``, ``@``, a tab or a carriage return (also after leading spaces) get a ``'`` in front, which
spreadsheets show as text. Cells holding the separator, a quote or a line break are quoted (so a
separator cannot start a new cell with ``=``). Numbers (``int``/``float``) are written as they are,
so they stay numbers: ``-0.5`` is a number, ``-0.5`` typed as a run name is text.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from typing import Any, Protocol

TRIGGERS = ("=", "+", "-", "@", "\t", "\r")


class _Writable(Protocol):
    def write(self, text: str, /) -> Any: ...


def safe_cell(value: Any) -> Any:
    """``value`` ready for a CSV cell: numbers unchanged, ``None`` empty, formula-like text defused."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int | float):
        return value
    text = str(value)
    if text.startswith(TRIGGERS) or text.lstrip(" ").startswith(TRIGGERS):
        return "'" + text
    return text


class SafeWriter:
    """``csv.writer`` with every cell passed through :func:`safe_cell`."""

    def __init__(self, out: _Writable) -> None:
        self._writer = csv.writer(out, lineterminator="\n", quoting=csv.QUOTE_MINIMAL)

    def writerow(self, row: Iterable[Any]) -> None:
        self._writer.writerow([safe_cell(cell) for cell in row])


def writer(out: _Writable) -> SafeWriter:
    return SafeWriter(out)
