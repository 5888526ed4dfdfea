"""Helpers for the security checklist tests (imported as ``seckit``): every route of the app, with
concrete paths, an app in team mode (no local auto-login) on a SQLite file, and a valid ``STATS``."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from starlette.staticfiles import StaticFiles

from app.main import create_app
from app.settings import Settings
from tests.app.apikit import STATS as STATS  # one valid statistics record for all the kits

FILL = {"token": "x" * 43, "name": "p", "run_id": "1", "epoch": "1"}


@dataclass(frozen=True)
class Route:
    method: str
    path: str

    @property
    def url(self) -> str:
        if self.path.startswith("/static/"):
            return self.path.replace("{name}", "cw.css")
        return re.sub(r"\{(\w+)\}", lambda m: FILL.get(m.group(1), "1"), self.path)

    def __str__(self) -> str:
        return f"{self.method} {self.path}"


def route_objects(routes: list[Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    """(full path, route object) for every route, inside included routers too."""
    for route in routes:
        if type(route).__name__ == "_IncludedRouter":  # FastAPI >= 0.16x: included routers stay nested
            yield from route_objects(
                route.original_router.routes, prefix + (route.include_context.prefix or "")
            )
            continue
        yield prefix + route.path, route


def _walk(routes: list[Any]) -> Iterator[Route]:
    for path, route in route_objects(routes):
        if isinstance(getattr(route, "app", None), StaticFiles):  # a mounted folder (app/web/static.py)
            yield Route("GET", path + "/{name}")
        for method in sorted(getattr(route, "methods", None) or []):
            if method != "HEAD":
                yield Route(method, path)


def all_routes(app: FastAPI) -> list[Route]:
    """Every (method, path) the app serves: API, pages, static files, docs."""
    return sorted(set(_walk(list(app.routes))), key=str)


def team_settings(root: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": f"sqlite:///{root / 'cw.db'}",
        "broker_url": f"sqla+sqlite:///{root / 'broker.db'}",
        "artifact_dir": root / "artifacts",
        "secret_key": "security-tests",
        "local_autologin": False,
        "maintenance_interval_seconds": 0,
    } | overrides
    return Settings(**values, _env_file=None)  # type: ignore[call-arg]


def team_app(root: Path, **overrides: Any) -> FastAPI:
    app = create_app(team_settings(root, **overrides))
    app.state.enqueue = lambda run_id: None  # no broker needed: runs stay queued
    return app
