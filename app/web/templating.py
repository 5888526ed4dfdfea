"""The pages' Jinja2 environment: templates, ``static_url`` (cache-busting) and JSON filters."""

from __future__ import annotations

import json
import math
from typing import Any

from fastapi.templating import Jinja2Templates

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


def static_url(name: str) -> str:
    path = STATIC_DIR / name
    version = int(path.stat().st_mtime) if path.exists() else 0
    return f"/static/{name}?v={version}"


templates.env.globals["static_url"] = static_url
templates.env.filters["jsonsafe"] = tojson_safe
templates.env.filters["compact_json"] = lambda v: json.dumps(v, sort_keys=True, separators=(", ", ": "))
