"""The compare page: overlaid curves, grouped mean ± std bands, the sweep plot, the N-way config
diff and histogram small multiples; the whole view is in the URL (see app/compare_view.py)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from app.authz import visible_project_ids
from app.compare_view import SUMMARY_KEYS, CompareData, CompareQuery, build_compare
from app.deps import HEAVY_READ, SessionDep
from app.pages.common import BrowserDep, render

router = APIRouter(include_in_schema=False)


def _page_data(query: CompareQuery, data: CompareData) -> dict[str, Any]:
    group_of = {run_id: i for i, g in enumerate(data.groups) for run_id in g.run_ids}
    return {
        "stat": query.stat,
        "metric": query.metric,
        "x": data.x,
        "line": query.line,
        "hist_epoch": data.hist_epoch,
        "runs": [
            {"id": r.id, "name": r.name or f"run {r.id}", "group": group_of.get(r.id, 0)} for r in data.runs
        ],
        "curves": {str(k): sorted(v.items()) for k, v in data.curves.items()},
        "groups": [
            {"label": g.label, "runs": g.run_ids, "x": b.x, "mean": b.mean, "std": b.std, "n": b.n}
            for g, b in zip(data.groups, data.bands, strict=True)
        ],
        "sweep": [{"label": s.label, "x": s.x, "mean": s.mean, "std": s.std, "n": s.n} for s in data.sweep],
        "upper_bound": data.upper_bound,
        "hists": {str(k): v for k, v in data.hists.items()},
    }


@router.get("/compare", response_class=HTMLResponse, dependencies=[HEAVY_READ])
def compare_page(request: Request, browser: BrowserDep, session: SessionDep) -> HTMLResponse:
    params: dict[str, list[str]] = {}
    for key, value in request.query_params.multi_items():
        params.setdefault(key, []).append(value)
    query, problems = CompareQuery.from_params(params)
    data = build_compare(session=session, query=query, visible=visible_project_ids(session, browser.actor))
    unknown = [key for key in query.group if data.runs and key not in data.key_choices]
    if unknown:
        problems["group"] = (
            f"no run has config key(s) {', '.join(unknown)}; use one of {', '.join(data.key_choices)}"
        )
    return render(
        request,
        browser,
        "compare.html",
        {
            "nav": "compare",
            "q": query,
            "data": data,
            "problems": problems,
            "canonical": query.url(x=data.x),
            "group_rows": list(zip(data.groups, data.bands, strict=True)),
            "metric_choices": [*data.stat_choices, *SUMMARY_KEYS],
            "page_data": _page_data(query, data),
        },
    )
