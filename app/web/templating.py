"""The pages' Jinja2 environment: templates, ``static_url`` (cache-busting) and JSON filters."""

from __future__ import annotations

import json
import math
import numbers
from typing import Any

from fastapi.templating import Jinja2Templates
from markupsafe import Markup, escape

from app.resources import shipped
from app.web.static import STATIC_DIR

TEMPLATE_DIR = shipped("templates")
templates = Jinja2Templates(directory=str(TEMPLATE_DIR))


def tojson_safe(value: Any) -> Any:
    """NaN/Inf become null so the page's JSON parses (JSON has no NaN)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: tojson_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [tojson_safe(v) for v in value]
    return value


def script_json(value: Any) -> Markup:
    """``value`` as JSON for a ``<script type="application/json">`` block: Jinja's ``tojson`` (sorted
    keys; ``<``, ``>``, ``&`` and ``'`` escaped) with NaN/Inf as null. One C-encoder pass when every
    number is finite (a compare page of 100 runs is ~600 KB: the Python walk of :func:`tojson_safe`
    cost as much as the encoding); the walk only when the encoder finds a non-finite number."""
    try:
        text = json.dumps(value, sort_keys=True, allow_nan=False)
    except ValueError:
        text = json.dumps(tojson_safe(value), sort_keys=True)
    return Markup(
        text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026").replace("'", "\\u0027")
    )


def number_cell(value: Any, digits: int = 3) -> Markup:
    """A table cell's number: ``%.{digits}g``, a muted em dash for None, other values escaped. The
    ``num`` of ``_macros.html``: a Python function, as a macro it cost ~5 us a cell (a run page
    has ~2,000)."""
    if value is None:
        return Markup('<span class="muted">\u2014</span>')
    if isinstance(value, numbers.Number):
        return Markup(f"%.{digits}g" % value)
    return escape(value)


def hist_bins_text(hist: dict[str, Any]) -> Markup:
    """A histogram's non-empty bins as text, ``[lo, hi): count; ...`` (``%.3g`` edges; every bin but
    the last is followed by ``; ``): the compare page's no-JavaScript table, 100 runs x 64 bins."""
    edges, counts = hist["edges"], hist["counts"]
    last = len(counts) - 1
    parts = [
        "[%.3g, %.3g): %s%s" % (edges[i], edges[i + 1], escape(c), "; " if i != last else "")  # noqa: UP031
        for i, c in enumerate(counts)
        if c
    ]
    return Markup("".join(parts))


def static_url(name: str) -> str:
    path = STATIC_DIR / name
    version = int(path.stat().st_mtime) if path.exists() else 0
    return f"/static/{name}?v={version}"


templates.env.globals["static_url"] = static_url
templates.env.filters["jsonsafe"] = tojson_safe
templates.env.filters["script_json"] = script_json
templates.env.globals["number_cell"] = number_cell
templates.env.filters["hist_bins_text"] = hist_bins_text
templates.env.filters["compact_json"] = lambda v: json.dumps(v, sort_keys=True, separators=(", ", ": "))
