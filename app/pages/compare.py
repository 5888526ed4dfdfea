"""The compare page: overlaid curves, grouped mean ± std bands, the sweep plot, the N-way config
diff and histogram small multiples; the whole view is in the URL (see app/compare/query.py)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from app.auth.roles import visible_project_ids
from app.compare.query import XAXES
from app.compare.view import SUMMARY_KEYS, CompareData, CompareQuery, build_compare, page_data
from app.deps import HEAVY_READ, SessionDep
from app.pages.common import Browser, BrowserDep, render
from app.series.query import gc_paused

router = APIRouter(include_in_schema=False)


@router.get("/compare", response_class=HTMLResponse, dependencies=[HEAVY_READ])
def compare_page(request: Request, browser: BrowserDep, session: SessionDep) -> HTMLResponse:
    params: dict[str, list[str]] = {}
    for key, value in request.query_params.multi_items():
        params.setdefault(key, []).append(value)
    query, problems = CompareQuery.from_params(params)
    visible = visible_project_ids(session=session, actor=browser.actor)
    with gc_paused():  # ~100k short-lived objects (20,000 points, 600 KB of page): no heap scans meanwhile
        data = build_compare(session=session, query=query, visible=visible)
        return _page(request, browser, data, problems)


def _page(request: Request, browser: Browser, data: CompareData, problems: dict[str, str]) -> HTMLResponse:
    return render(
        request,
        browser,
        "compare.html",
        {
            "nav": "compare",
            "q": data.view,
            "data": data,
            "problems": problems | data.problems,
            "canonical": data.view.url(),
            "xaxes": XAXES,
            "group_rows": list(zip(data.groups, data.finals, strict=True)),
            "metric_choices": [*data.stat_choices, *SUMMARY_KEYS],
            "page_data": page_data(data),
        },
        status_code=422 if {"runs", "epoch"} & problems.keys() else 200,  # e.g. runs=² (not ASCII digits)
    )
