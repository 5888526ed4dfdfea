"""What a compare view shows, as a query string: parsed into :class:`CompareQuery` and written back.

The whole view lives in the URL so a comparison can be bookmarked, shared and pinned by a report:
``/compare?sweep=abc&stat=mean_sv&group=regularizer&x=lr&line=regularizer&metric=mean_sv
&xaxis=epoch&smooth=0.6&logy=1&epoch=&layer=fc1``.

- ``group`` / ``line``: comma-separated config keys; absent = automatic (the swept keys other than
  ``seed``, see :func:`app.compare.groups.default_group_keys`); ``-`` = explicitly none.
- ``xaxis``: ``epoch``, ``step`` (SDK scalars) or ``time`` (wall time); absent = automatic.
- ``smooth``: EMA weight in [0, 1) for the curves (0 = raw); ``logy=1``: log y axis for the curves.
- ``epoch``: the histograms' epoch (empty = the last common epoch: the newest every run reached).
- ``layer``: a named layer (per-layer collapse, ``stats_layers``): the curves, the group table, the
  sweep plot (when its metric is a collapse statistic; metrics such as recall_at_1 are per run) and
  the histograms show that layer's; empty = the default embedding.

Adding a parameter is one field with :func:`_meta` metadata: a parser that returns
``(value, problem)`` and a formatter (``""`` leaves it out of the URL); parsing, problems and the URL
follow from the field list.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from app.web.ints import parse_natural

XAXES = ("epoch", "step", "time")
NONE_MARKER = "-"
DEFAULT_STAT = "mean_sv"

MAX_ID = 2**31 - 1  # run ids and epochs are 32-bit integers in the database
MAX_LAYER_NAME = 128

Parsed = tuple[Any, str]


def _split(values: Sequence[str]) -> list[str]:
    return [part.strip() for value in values for part in value.split(",") if part.strip()]


def _ids(raw: Sequence[str]) -> Parsed:
    ids: list[int] = []
    problem = ""
    for part in _split(raw):
        run_id = parse_natural(part)  # ASCII digits only: "²".isdigit() is true, int("²") fails
        if run_id is not None and 1 <= run_id <= MAX_ID:
            ids.append(run_id)
        else:
            problem = f"{part!r} is not a run id (whole numbers, comma-separated)"
    return list(dict.fromkeys(ids)), problem


def _names(raw: Sequence[str]) -> Parsed:
    return list(dict.fromkeys(_split(raw))), ""


def _keys(raw: Sequence[str]) -> Parsed:
    """Config keys; ``-`` alone means "none" (an explicit empty list), ignored next to real keys;
    nothing but blanks means automatic (None)."""
    parts = _names(raw)[0]
    if not parts:
        return None, ""
    return [k for k in parts if k != NONE_MARKER], ""


def _text(raw: Sequence[str]) -> Parsed:
    return raw[-1].strip(), ""


def _stat(raw: Sequence[str]) -> Parsed:
    return raw[-1].strip() or DEFAULT_STAT, ""


def _epoch(raw: Sequence[str]) -> Parsed:
    text = raw[-1].strip()
    if not text or text == "last":
        return None, ""
    epoch = parse_natural(text)
    if epoch is not None and epoch <= MAX_ID:
        return epoch, ""
    return None, f"{text!r} is not an epoch; use a whole number or leave it empty"


def _layer(raw: Sequence[str]) -> Parsed:
    return raw[-1].strip()[:MAX_LAYER_NAME], ""


def _xaxis(raw: Sequence[str]) -> Parsed:
    text = raw[-1].strip().lower()
    if not text:
        return None, ""
    if text in XAXES:
        return text, ""
    return None, f"{text!r} is not an x axis; use one of {', '.join(XAXES)}"


def _smooth(raw: Sequence[str]) -> Parsed:
    text = raw[-1].strip()
    if not text:
        return 0.0, ""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0.0 <= value < 1.0:
        return 0.0, f"{text!r} is not a smoothing weight; use a number from 0 (raw curves) to 0.99"
    return value, ""


def _flag(raw: Sequence[str]) -> Parsed:
    text = raw[-1].strip().lower()
    if text in ("1", "true", "on", "yes"):
        return True, ""
    if text in ("", "0", "false", "off", "no"):
        return False, ""
    return False, f"{text!r} is not a switch; use 1 or 0"


def _join(value: Any) -> str:
    return ",".join(map(str, value))


def _keys_out(value: list[str] | None) -> str:
    if value is None:
        return ""
    return ",".join(value) if value else NONE_MARKER


def _plain(value: Any) -> str:
    return "" if value is None else str(value)


def _switch(value: bool) -> str:
    return "1" if value else ""


def _number(value: float) -> str:
    return f"{value:g}" if value else ""


def _meta(
    parse: Callable[[Sequence[str]], Parsed],
    fmt: Callable[[Any], str],
    *,
    name: str = "",
    aliases: tuple[str, ...] = (),
) -> dict[str, Any]:
    """A view parameter: its URL name (default: the field's), parser, formatter and aliases."""
    return {"parse": parse, "format": fmt, "name": name, "aliases": aliases}


@dataclass(frozen=True)
class CompareQuery:
    runs: list[int] = field(default_factory=list, metadata=_meta(_ids, _join, aliases=("run",)))
    sweeps: list[str] = field(default_factory=list, metadata=_meta(_names, _join, name="sweep"))
    stat: str = field(default=DEFAULT_STAT, metadata=_meta(_stat, _plain))
    group: list[str] | None = field(default=None, metadata=_meta(_keys, _keys_out))
    xaxis: str | None = field(default=None, metadata=_meta(_xaxis, _plain))
    smooth: float = field(default=0.0, metadata=_meta(_smooth, _number))
    logy: bool = field(default=False, metadata=_meta(_flag, _switch))
    x: str = field(default="", metadata=_meta(_text, _plain))
    metric: str = field(default=DEFAULT_STAT, metadata=_meta(_stat, _plain))
    line: list[str] | None = field(default=None, metadata=_meta(_keys, _keys_out))
    epoch: int | None = field(default=None, metadata=_meta(_epoch, _plain))
    layer: str = field(default="", metadata=_meta(_layer, _plain))

    @classmethod
    def from_params(cls, params: Mapping[str, list[str]]) -> tuple[CompareQuery, dict[str, str]]:
        """Parse the query string (repeated or comma-separated values); bad parts are reported by
        parameter name and dropped, never fatal."""
        problems: dict[str, str] = {}
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            name = f.metadata["name"] or f.name
            raw = [v for n in (name, *f.metadata["aliases"]) for v in params.get(n, [])]
            if not raw:
                continue
            value, problem = f.metadata["parse"](raw)
            values[f.name] = value
            if problem:
                problems[name] = problem
        return cls(**values), problems

    def params(self) -> dict[str, str]:
        """The non-empty URL parameters of this view, in a fixed order."""
        out: dict[str, str] = {}
        for f in dataclasses.fields(self):
            text = f.metadata["format"](getattr(self, f.name))
            if text:
                out[f.metadata["name"] or f.name] = text
        return out

    def url(self, **changes: Any) -> str:
        """This view as a URL, with ``changes`` (field values) applied."""
        view = dataclasses.replace(self, **changes) if changes else self
        return "/compare?" + urlencode(view.params())
