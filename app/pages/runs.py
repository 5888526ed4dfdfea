"""The runs list: filters, sortable collapse-summary columns, live status badges, bulk compare, and
bulk actions on the selection (tag, archive, delete to the trash; restore and purge in the trash); and
the "Reproduce the paper" button (the demo's sweeps from the browser, see app/demo/server.py)."""

from __future__ import annotations

import re
from typing import Annotated, Any
from urllib.parse import parse_qs, urlencode

from fastapi import APIRouter, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from pydantic import ValidationError
from sqlalchemy.orm import Session

from app.auth.roles import highest_role, visible_project_ids
from app.demo import server as demo_server
from app.deps import SessionDep
from app.errors import DomainError
from app.pages.common import Browser, BrowserDep, check_csrf, redirect, render
from app.runs import bulk
from app.runs.artifacts import CheckpointStore
from app.runs.table import SORT_KEYS, STATUSES, TableQuery, filter_choices, runs_table
from collapsewatch.contract import JobSpec

router = APIRouter(include_in_schema=False)

FILTERS = ("project", "status", "regularizer", "objective", "tag", "sweep", "lifecycle")
DONE = {
    "tag": "tagged",
    "untag": "untagged",
    "archive": "archived",
    "unarchive": "unarchived",
    "delete": "moved to the trash",
    "restore": "restored",
    "purge": "deleted permanently",
}
SHOW = {"live": "active", "all": "active + archived", "archived": "archived", "trash": "trash"}


@router.get("/")
def home() -> RedirectResponse:
    return RedirectResponse("/runs", status_code=303)


def _query(values: dict[str, Any]) -> TableQuery:
    page = values.get("page", 1)
    try:
        page = int(page)
    except (TypeError, ValueError):
        page = 1
    known = {k: str(values[k]) for k in (*FILTERS, "sort") if values.get(k) not in (None, "")}
    return TableQuery(**known, page=page)


def _page(
    request: Request,
    browser: Browser,
    session: Session,
    query: TableQuery,
    *,
    flashes: list[dict[str, str]] | None = None,
    status_code: int = 200,
    demo: str = "",
) -> HTMLResponse:
    visible = visible_project_ids(session=session, actor=browser.actor)
    table = runs_table(session=session, query=query, visible=visible)
    batches = demo_server.recent_batches(session=session, visible=visible, limit=1)
    if BATCH.match(demo) and demo not in batches:
        batches.insert(0, demo)
    demos = [demo_server.progress(session=session, batch=b, visible=visible) for b in batches]
    filters = {name: getattr(query, name) for name in FILTERS}
    active = {k: v for k, v in filters.items() if v and not (k == "lifecycle" and v == "live")}

    def sort_url(key: str) -> str:
        new = key if query.sort == f"-{key}" else f"-{key}"
        return "/runs?" + urlencode(active | {"sort": new})

    def page_url(number: int) -> str:
        return "/runs?" + urlencode(active | {"sort": query.sort, "page": number})

    context: dict[str, Any] = {
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
        "show": SHOW,
        "back": urlencode(active | {"sort": query.sort, "page": table.page}),
        # the bulk buttons a refusal would answer 403 are not offered (the rules stay the API's)
        "role": highest_role(session=session, actor=browser.actor),
        "demos": [d for d in demos if d.total],
    }
    if flashes:
        context["flashes"] = flashes
    return render(request, browser, "runs.html", context, status_code=status_code)


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
    lifecycle: str = "live",
    done: str = "",
    n: int = 0,
    demo: str = "",
) -> HTMLResponse:
    query = TableQuery(project, status, regularizer, objective, tag, sweep, sort, page, lifecycle)
    flashes = []
    if done in DONE and 0 <= n <= bulk.MAX_BULK_RUNS:  # after a bulk action (the words are ours, only
        # the count comes from the URL, and only a count a bulk action can give)
        flashes.append({"kind": "ok", "text": f"{n} run{'s' if n != 1 else ''} {DONE[done]}."})
    return _page(request, browser, session, query, flashes=flashes, demo=demo)


def _id_list(text: str) -> list[int | str]:
    """``"1,2,3"`` as ids; a part that is not ASCII digits (``545_0``, ``+545``, ``545.0``) stays
    text, for the model's strict integers to refuse by name."""
    return [
        int(part) if part.isascii() and part.isdigit() else part for part in text.split(",") if part.strip()
    ]


@router.get("/runs/bulk")
def bulk_form_reloaded(_browser: BrowserDep) -> RedirectResponse:
    """The address a refused bulk action leaves in the browser: reloading it shows the runs again."""
    return RedirectResponse("/runs", status_code=303)


@router.post("/runs/bulk", response_model=None)
def bulk_form(
    request: Request,
    browser: BrowserDep,
    session: SessionDep,
    action: Annotated[str, Form(max_length=16)] = "",
    run: Annotated[list[str] | None, Form(max_length=bulk.MAX_BULK_RUNS)] = None,
    runs: Annotated[str, Form(max_length=12 * bulk.MAX_BULK_RUNS)] = "",
    tags: Annotated[str, Form(max_length=2000)] = "",
    back: Annotated[str, Form(max_length=2000)] = "",
    csrf_token: Annotated[str, Form()] = "",
) -> Response:
    """The runs page's bulk actions: the same rules as ``POST /api/v1/run-actions``; a refusal shows
    the list again with the reason (and its status), and changes nothing. The page's script sends
    the ticked ids as one field, ``runs=1,2,3`` (a form of 1,000 ``run`` fields would pass
    Starlette's limit of 1,000 fields); ``run`` fields are read too."""
    check_csrf(request, browser, csrf_token)
    values = {k: v[-1] for k, v in parse_qs(back).items()}  # only the table's own parameters survive
    query = _query(values)
    try:
        data = bulk.RunsBulkIn(
            action=action,
            run_ids=[*_id_list(",".join(run or [])), *_id_list(runs)],
            tags=[t.strip() for t in tags.split(",") if t.strip()],
        )
    except ValidationError as exc:
        problems = "; ".join(_problem(e) for e in exc.errors())
        return _page(request, browser, session, query, flashes=[_error(problems)], status_code=422)
    try:
        answer = bulk.apply(session=session, actor=browser.actor, data=data)
    except DomainError as exc:
        session.rollback()
        return _page(
            request, browser, session, query, flashes=[_error(exc.message)], status_code=exc.status_code
        )
    session.commit()
    if data.action == "purge":
        store = getattr(request.app.state, "checkpoints", None)
        bulk.remove_artifacts(
            store or CheckpointStore.from_settings(request.app.state.settings), answer.run_ids
        )
    target = {k: v for k, v in values.items() if k in (*FILTERS, "sort", "page")}
    return redirect(request, "/runs?" + urlencode(target | {"done": data.action, "n": len(answer.changed)}))


def _error(text: str) -> dict[str, str]:
    return {"kind": "error", "text": text}


def _problem(error: Any) -> str:
    where = ".".join(str(part) for part in error.get("loc", ()) if not isinstance(part, int)) or "form"
    message = str(error.get("msg", "not allowed")).removeprefix("Value error, ")
    if where == "run_ids":  # the list (none ticked, too many), or one id of a hand-made form
        item = any(isinstance(part, int) for part in error.get("loc", ()))
        return f"runs: {message} (run ids)" if item else "select runs first (at most 1,000)"
    return message if where == "form" else f"{where}: {message}"


BATCH = re.compile(r"^[0-9a-f]{8}$")


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
    """Queue the demo's sweeps (the seed's claims and the per-layer study) in project ``demo``, or
    the user's own ``demo-…`` project where ``demo`` belongs to others (app.demo.server.demo_project)."""
    check_csrf(request, browser, csrf_token)
    try:
        project = demo_server.demo_project(session=session, actor=browser.actor)
    except DomainError as exc:
        raise HTTPException(exc.status_code, detail=exc.message) from exc
    settings = request.app.state.settings
    batch = demo_server.submit_demo(
        session=session,
        owner_id=browser.user_id,
        quick=bool(quick),
        project=project,
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
