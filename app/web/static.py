"""Static files: the dashboard's CSS/JS (``app/web/static/``, package data found through the
``app.web`` package, so a checkout and an installed wheel serve the same files) and plotly.js from the
installed plotly package (no CDN).

The dashboard's files are served by Starlette's ``StaticFiles(packages=…)`` (path checks, ``ETag`` /
``Last-Modified`` and ``304``, ``HEAD``), with a ``Cache-Control`` header added; pages link them with
``?v=<mtime>`` (:func:`app.web.templating.static_url`), so an hour of caching never serves stale code.
plotly.min.js stays a route of its own: it lives in another distribution's package, at a path that
has no ``static`` folder, and gets a day of caching (it changes only when plotly is upgraded).
"""

from __future__ import annotations

from functools import lru_cache
from importlib.resources import files
from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse
from starlette.responses import Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

PACKAGE, FOLDER = "app.web", "static"
STATIC_DIR = Path(str(files(PACKAGE) / FOLDER))
STATIC_CACHE = "public, max-age=3600"
PLOTLY_CACHE = "public, max-age=86400"


class PackageStaticFiles(StaticFiles):
    """``StaticFiles`` over package data, with ``Cache-Control`` on what it serves."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        if response.status_code in (200, 304):
            response.headers.setdefault("Cache-Control", STATIC_CACHE)
        return response


@lru_cache(maxsize=1)
def plotly_js_path() -> Path:
    """``plotly/package_data/plotly.min.js`` of the installed plotly package."""
    path = Path(str(files("plotly") / "package_data" / "plotly.min.js"))
    if not path.is_file():  # pragma: no cover - a broken plotly install
        raise RuntimeError(f"plotly.min.js not found at {path}; reinstall the plotly package")
    return path


router = APIRouter(include_in_schema=False)


@router.get("/static/plotly.min.js")
def plotly_js() -> FileResponse:
    return FileResponse(
        plotly_js_path(), media_type="text/javascript", headers={"Cache-Control": PLOTLY_CACHE}
    )


# After the plotly route, so that one wins; a flat folder: nothing outside it is reachable.
router.mount("/static", PackageStaticFiles(packages=[(PACKAGE, FOLDER)]), name="static")
