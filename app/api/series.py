"""``GET /api/v1/series``: one downsampled series per run, aligned by epoch/step (``app.series.query``)."""

from __future__ import annotations

import json
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request, Response
from sqlalchemy.orm import Session

from app.api.access import UserActorDep
from app.auth import roles
from app.deps import HEAVY_READ, MAX_ID, SessionDep
from app.errors import NotFound
from app.series.cache import SeriesCache, runs_version
from app.series.query import SourceName, gc_paused, load_series
from collapsewatch.contract import KEY_PATTERN, SeriesPublic

router = APIRouter(prefix="/api/v1", tags=["series"])
MAX_RUNS = 50
POINT = '{"x":%d,"y":%r,"y_min":%r,"y_max":%r}'  # values are finite floats: repr is valid JSON


@router.get("/series", response_model=list[SeriesPublic], dependencies=[HEAVY_READ])
def get_series(
    request: Request,
    session: SessionDep,
    actor: UserActorDep,
    run: Annotated[
        list[Annotated[int, Query(ge=1, le=MAX_ID)]],
        Query(min_length=1, max_length=MAX_RUNS, description=f"run ids (repeat; at most {MAX_RUNS})"),
    ],
    key: Annotated[str, Query(pattern=KEY_PATTERN, description="statistic, epoch metric or SDK key")],
    max_points: Annotated[int, Query(ge=2, le=10_000)] = 1000,
    source: Annotated[
        Literal["auto", "epoch", "metric"],
        Query(description="auto: statistic column, else the run's SDK scalars, else epoch metrics"),
    ] = "auto",
) -> Response:
    """Points ``{x, y, y_min, y_max}`` per run: x is the epoch (source epoch) or the step (metric).

    At most ``max_points`` per run; the first, last, min and max points are always kept and every
    point carries the min/max envelope of its bucket. ``total`` counts the stored points.
    """
    wanted = list(dict.fromkeys(run))
    found = roles.readable_run_ids(
        session=session, actor=actor, run_ids=wanted
    )  # unreadable runs look missing (404)
    missing = [r for r in wanted if r not in found]
    if missing:
        names = ", ".join(str(r) for r in missing)
        raise NotFound(f"run {names} does not exist" if len(missing) == 1 else f"runs {names} do not exist")
    cache = _cache(request)
    cache_key, version = (
        (tuple(wanted), key, max_points, source),
        runs_version(session=session, run_ids=wanted),
    )
    body = cache.get(cache_key, version)
    if body is None:
        body = _render(session, wanted, key, max_points, source)
        cache.put(cache_key, version, body)
    return Response(body, media_type="application/json")


def _cache(request: Request) -> SeriesCache:
    cache: SeriesCache | None = getattr(request.app.state, "series_cache", None)
    if cache is None:
        cache = request.app.state.series_cache = SeriesCache()
    return cache


def _render(session: Session, runs: list[int], key: str, max_points: int, source: SourceName) -> str:
    with gc_paused():
        results = load_series(session=session, run_ids=runs, key=key, max_points=max_points, source=source)
        parts = []
        for r in results:  # hand-written JSON: 20,000 points are the hot path of the compare page
            head = json.dumps({"run": r.run, "key": key, "source": r.source, "total": r.total})
            points = ",".join([POINT % point for point in r.points])
            parts.append(f'{head[:-1]},"points":[{points}]}}')
        return f"[{','.join(parts)}]"
