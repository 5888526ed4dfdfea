"""The run page (live over SSE) and its buttons: cancel, re-run, clone-and-edit."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse
from sqlalchemy.orm import Session

from app.auth import roles
from app.deps import HEAVY_READ, SessionDep
from app.errors import DomainError
from app.models import Run
from app.pages.common import Browser, BrowserDep, check_csrf, redirect, render
from app.runs import lifecycle, store, submit
from app.runs.alert import DEFAULT_RHO_THRESHOLD
from app.runs.events import publish
from app.series.query import gc_paused
from app.series.run_view import (
    alerts_for,
    alerts_from_db,
    epoch_rows,
    layer_order,
    logged_scalars,
    metric_keys,
    provenance_view,
    recent_logs,
    status_history,
)
from collapsewatch.contract import TERMINAL_STATUSES, JobSubmit

router = APIRouter(include_in_schema=False)
RhoQuery = Annotated[float, Query(ge=0.0, le=1.0)]


def _load(session: Session, run_id: int, browser: Browser, action: roles.Action = "read") -> Run:
    """The run, if the browser's user may ``action`` it (app.auth.roles: 404 outsiders, 403 role)."""
    try:
        roles.check_run(
            session=session,
            actor=roles.Actor(browser.user_id, browser.is_admin),
            run_id=run_id,
            action=action,
        )
        return store.get_run(session=session, run_id=run_id)
    except DomainError as exc:
        raise HTTPException(exc.status_code, detail=exc.message) from exc


@router.get("/runs/{run_id}", response_class=HTMLResponse, dependencies=[HEAVY_READ])
def run_page(
    run_id: int,
    request: Request,
    browser: BrowserDep,
    session: SessionDep,
    rho: RhoQuery = DEFAULT_RHO_THRESHOLD,
    layer: Annotated[str, Query(max_length=128)] = "",
) -> HTMLResponse:
    """``layer``: the named layer whose statistics the collapse charts show (empty: the embedding)."""
    run = _load(session, run_id, browser)
    with gc_paused():  # 200 epochs of spectra and histograms: no heap scans while they are built
        return _run_page(request, browser, session, run, rho, layer)


def _run_page(
    request: Request, browser: Browser, session: Session, run: Run, rho: float, layer: str
) -> HTMLResponse:
    run_id = run.id
    rows = epoch_rows(session=session, run_id=run_id)
    page_data = {
        "run": {"id": run.id, "status": run.status, "config": run.config, "summary": run.summary},
        "epochs": rows,
        "layers": layer_order(run.config or {}, rows),
        "layer": layer,
        "scalars": logged_scalars(session=session, run_id=run_id),
        "rho_threshold": rho,
        "terminal": sorted(TERMINAL_STATUSES),
    }
    return render(
        request,
        browser,
        "run.html",
        {
            "nav": "runs",
            "run": run,
            "rows": rows,
            "alerts": alerts_for(rows, rho_threshold=rho),
            "rho_threshold": rho,
            "metric_keys": metric_keys(rows),
            "history": status_history(session=session, run_id=run_id),
            "logs": recent_logs(session=session, run_id=run_id),
            "provenance": provenance_view(run.provenance),
            "terminal": run.status in TERMINAL_STATUSES,
            "page_data": page_data,
        },
    )


@router.get("/runs/{run_id}/alerts")
def run_alerts(
    run_id: int, browser: BrowserDep, session: SessionDep, rho: RhoQuery = DEFAULT_RHO_THRESHOLD
) -> JSONResponse:
    """The current collapse alerts (the run page refreshes its banner from this after each epoch)."""
    _load(session, run_id, browser)
    alerts = alerts_from_db(session=session, run_id=run_id, rho_threshold=rho)
    body = [{"kind": a.kind, "began_epoch": a.began_epoch, "message": a.message} for a in alerts]
    return JSONResponse(body)


@router.post("/runs/{run_id}/cancel")
def cancel_run(
    run_id: int,
    request: Request,
    browser: BrowserDep,
    session: SessionDep,
    csrf_token: Annotated[str, Form()] = "",
) -> RedirectResponse:
    check_csrf(request, browser, csrf_token)
    _load(session, run_id, browser, "write")
    try:
        _run, written = lifecycle.cancel(session=session, run_id=run_id)
    except DomainError as exc:
        raise HTTPException(exc.status_code, detail=exc.message) from exc
    session.commit()
    publish(request, written.events)
    return redirect(request, f"/runs/{run_id}")


@router.post("/runs/{run_id}/rerun")
def rerun(
    run_id: int,
    request: Request,
    browser: BrowserDep,
    session: SessionDep,
    csrf_token: Annotated[str, Form()] = "",
) -> RedirectResponse:
    """A new queued run with the same spec, project and tags."""
    check_csrf(request, browser, csrf_token)
    run = _load(session, run_id, browser, "write")
    if run.kind != "job":
        raise HTTPException(409, detail=f"run {run_id} was logged by the SDK; only jobs can be re-run")
    data = JobSubmit(project=run.project.name, name=run.name, tags=list(run.tags), spec=dict(run.config))
    settings = request.app.state.settings
    try:
        created = submit.submit_jobs(
            session=session,
            data=data,
            owner_id=browser.user_id,
            max_attempts=settings.max_attempts,
            publisher=request.app.state.publisher,
            enqueue=request.app.state.enqueue,
        )
    except DomainError as exc:
        raise HTTPException(exc.status_code, detail=exc.message) from exc
    return redirect(request, f"/runs/{created[0].id}")
