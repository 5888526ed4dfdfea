"""Static files: the dashboard's CSS/JS (``app/web/static/``) and plotly.js from the installed
plotly package (no CDN)."""

from __future__ import annotations

import mimetypes
from functools import lru_cache
from pathlib import Path

from fastapi import APIRouter, HTTPException
from fastapi.responses import FileResponse

STATIC_DIR = Path(__file__).resolve().parent / "static"
STATIC_CACHE = "public, max-age=3600"

router = APIRouter(include_in_schema=False)


@lru_cache(maxsize=1)
def plotly_js_path() -> Path:
    """``plotly/package_data/plotly.min.js`` of the installed plotly package."""
    import plotly

    path = Path(plotly.__file__).resolve().parent / "package_data" / "plotly.min.js"
    if not path.is_file():  # pragma: no cover - a broken plotly install
        raise RuntimeError(f"plotly.min.js not found at {path}; reinstall the plotly package")
    return path


@lru_cache(maxsize=1)
def _static_names() -> frozenset[str]:
    return frozenset(p.name for p in STATIC_DIR.iterdir() if p.is_file())


@router.get("/static/plotly.min.js")
def plotly_js() -> FileResponse:
    return FileResponse(
        plotly_js_path(), media_type="text/javascript", headers={"Cache-Control": "public, max-age=86400"}
    )


@router.get("/static/{name}")
def static_file(name: str) -> FileResponse:
    """The dashboard's own CSS/JS (flat directory; nothing outside it is reachable). Only names
    that are files there are looked up: an overlong name or a NUL never reaches the filesystem."""
    if name not in _static_names():
        raise HTTPException(404, detail=f"no static file {name[:80]!r}")
    path = STATIC_DIR / name
    media_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    return FileResponse(path, media_type=media_type, headers={"Cache-Control": STATIC_CACHE})
