"""The runs list: filters, sortable collapse-summary columns, live status badges, bulk compare."""

from __future__ import annotations

from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from app.auth.roles import visible_project_ids
from app.deps import SessionDep
from app.pages.common import BrowserDep, render
from app.runs.table import SORT_KEYS, STATUSES, TableQuery, filter_choices, runs_table
from collapsewatch.contract import JobSpec

router = APIRouter(include_in_schema=False)

FILTERS = ("project", "status", "regularizer", "objective", "tag", "sweep")


@router.get("/")
def home() -> RedirectResponse:
    return RedirectResponse("/runs", status_code=303)


@router.get("/runs", response_class=HTMLResponse)
def runs_page(
    request: Request,
    browser: BrowserDep,
    session: SessionDep,
    project: str = "",
    status: str = "",
    regularizer: str = "",
    objective: str = "",
    tag: str = "",
    sweep: str = "",
    sort: str = "-id",
    page: int = 1,
) -> HTMLResponse:
    query = TableQuery(project, status, regularizer, objective, tag, sweep, sort, page)
    visible = visible_project_ids(session=session, actor=browser.actor)
    table = runs_table(session=session, query=query, visible=visible)
    filters = {name: getattr(query, name) for name in FILTERS}
    active = {k: v for k, v in filters.items() if v}

    def sort_url(key: str) -> str:
        new = key if query.sort == f"-{key}" else f"-{key}"
        return "/runs?" + urlencode(active | {"sort": new})

    def page_url(number: int) -> str:
        return "/runs?" + urlencode(active | {"sort": query.sort, "page": number})

    return render(
        request,
        browser,
        "runs.html",
        {
            "nav": "runs",
            "table": table,
            "filters": filters,
            "sort": query.sort,
            "sort_url": sort_url,
            "page_url": page_url,
            "sort_keys": SORT_KEYS,
            "statuses": STATUSES,
            "regularizers": JobSpec.model_fields["regularizer"].annotation.__args__,  # type: ignore[union-attr]
            "objectives": JobSpec.model_fields["objective"].annotation.__args__,  # type: ignore[union-attr]
            "choices": filter_choices(session=session, visible=visible),
        },
    )
