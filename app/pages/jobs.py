"""The new-job form: all spec fields, seeds, device class, sweep mode; validated on the server."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse, Response

from app.auth.roles import check_new_runs, check_run
from app.deps import SessionDep
from app.errors import DomainError, InvalidInput
from app.pages.common import Browser, BrowserDep, check_csrf, redirect, render
from app.runs import store, submit
from app.runs.job_form import default_values, form_fields, validate_form, values_from_run

router = APIRouter(include_in_schema=False)


def _form_page(
    request: Request, browser: Browser, values: dict[str, str], errors: dict[str, str], status_code: int = 200
) -> HTMLResponse:
    context = {"nav": "new", "groups": form_fields(), "values": values, "errors": errors}
    return render(request, browser, "new_job.html", context, status_code=status_code)


@router.get("/jobs/new", response_class=HTMLResponse)
def new_job(
    request: Request, browser: BrowserDep, session: SessionDep, clone: int | None = None
) -> HTMLResponse:
    values = default_values()
    if clone is not None:
        try:
            check_run(session=session, actor=browser.actor, run_id=clone, action="read")
            run = store.get_run(session=session, run_id=clone)
        except DomainError as exc:
            raise HTTPException(404, detail=exc.message) from exc
        values = values_from_run(run.config, project=run.project.name, tags=list(run.tags))
        values["name"] = f"{run.name or 'run ' + str(run.id)} (clone)"[:200]
    return _form_page(request, browser, values, {})


@router.post("/jobs/new", response_model=None)
async def submit_job(request: Request, browser: BrowserDep, session: SessionDep) -> Response:
    """Create the run(s) and go to the run (one) or the sweep's compare page (several).
    On any error: 422 with the form re-rendered, the messages next to the fields, nothing created."""
    form = await request.form()
    values = {key: str(value) for key, value in form.items() if isinstance(value, str)}
    check_csrf(request, browser, values.get("csrf_token"))
    kept = default_values() | {"sweep_mode": ""} | values
    result = validate_form(values)
    if result.submit is None:
        return _form_page(request, browser, kept, result.errors, status_code=422)
    try:
        check_new_runs(session=session, actor=browser.actor, project_name=result.submit.project)
    except DomainError as exc:
        return _form_page(request, browser, kept, {"project": exc.message}, status_code=exc.status_code)
    settings = request.app.state.settings
    try:
        created = submit.submit_jobs(
            session=session,
            data=result.submit,
            owner_id=browser.user_id,
            max_attempts=settings.max_attempts,
            publisher=request.app.state.publisher,
            enqueue=request.app.state.enqueue,
        )
    except InvalidInput as exc:
        field = str(exc.loc[-1]) if exc.loc else "sweep_mode"
        return _form_page(request, browser, kept, {field: exc.message}, status_code=422)
    if len(created) == 1:
        return redirect(request, f"/runs/{created[0].id}")
    return redirect(request, f"/compare?sweep={created[0].sweep_id}")
