"""The runs list: filters, sortable collapse-summary columns, live status badges, bulk compare; and
the "Reproduce the paper" button (the demo's sweeps from the browser, see app/demo/server.py)."""

from __future__ import annotations

import re
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from app.auth.roles import check_new_runs, visible_project_ids
from app.demo import server as demo_server
from app.deps import SessionDep
from app.errors import DomainError
from app.pages.common import BrowserDep, check_csrf, redirect, render
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
    demo: str = "",
) -> HTMLResponse:
    query = TableQuery(project, status, regularizer, objective, tag, sweep, sort, page)
    visible = visible_project_ids(session=session, actor=browser.actor)
    table = runs_table(session=session, query=query, visible=visible)
    batches = demo_server.recent_batches(session=session, visible=visible, limit=1)
    if BATCH.match(demo) and demo not in batches:
        batches.insert(0, demo)
    demos = [demo_server.progress(session=session, batch=b, visible=visible) for b in batches]
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
            "demos": [d for d in demos if d.total],
        },
    )


BATCH = re.compile(r"^[0-9a-f]{8}$")
DEMO_PROJECT = "demo"


def _batch(batch: str) -> str:
    if not BATCH.match(batch):
        raise HTTPException(404, detail=f"demo batch {batch!r} does not exist")
    return batch


@router.post("/demo")
def reproduce_the_paper(
    request: Request,
    browser: BrowserDep,
    session: SessionDep,
    csrf_token: Annotated[str, Form()] = "",
    quick: Annotated[str, Form()] = "",
) -> RedirectResponse:
    """Queue the demo's sweeps (the seed's claims and the per-layer study) in project ``demo``."""
    check_csrf(request, browser, csrf_token)
    try:
        check_new_runs(session=session, actor=browser.actor, project_name=DEMO_PROJECT)
    except DomainError as exc:
        raise HTTPException(exc.status_code, detail=exc.message) from exc
    settings = request.app.state.settings
    batch = demo_server.submit_demo(
        session=session,
        owner_id=browser.user_id,
        quick=bool(quick),
        project=DEMO_PROJECT,
        max_attempts=settings.max_attempts,
        publisher=request.app.state.publisher,
        enqueue=request.app.state.enqueue,
    )
    return redirect(request, f"/runs?demo={batch}")


@router.get("/demo/{batch}")
def demo_progress(batch: str, browser: BrowserDep, session: SessionDep) -> JSONResponse:
    """The batch's run counts and reports (the runs page polls this)."""
    visible = visible_project_ids(session=session, actor=browser.actor)
    found = demo_server.progress(session=session, batch=_batch(batch), visible=visible)
    if not found.total:
        raise HTTPException(404, detail=f"demo batch {batch!r} has no runs you can read")
    return JSONResponse(found.as_json())


@router.post("/demo/{batch}/reports", response_model=None)
def demo_reports(
    batch: str,
    request: Request,
    browser: BrowserDep,
    session: SessionDep,
    csrf_token: Annotated[str, Form()] = "",
) -> Response:
    """Write the batch's reports once its runs have finished (idempotent); JSON for the page's script,
    a redirect back to the runs page for a plain form post."""
    check_csrf(request, browser, csrf_token)
    visible = visible_project_ids(session=session, actor=browser.actor)
    try:
        found = demo_server.write_reports(
            session=session, actor=browser.actor, batch=_batch(batch), visible=visible
        )
    except DomainError as exc:
        raise HTTPException(exc.status_code, detail=exc.message) from exc
    session.commit()
    if "application/json" in request.headers.get("accept", ""):
        return JSONResponse(found.as_json())
    return redirect(request, f"/runs?demo={batch}")
