"""The new-job form: all spec fields, seeds, device class, sweep mode; validated on the server.

The "Data and model" card carries the dataset picker (the datasets of every project the user can
read) and an upload (``POST /jobs/datasets``, multipart): the .npz is checked before it is stored,
then the form comes back with it picked.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, Response
from sqlalchemy.orm import Session
from starlette.datastructures import UploadFile

from app.auth.roles import Actor, check_new_runs, check_run
from app.datasets import store as datasets
from app.datasets.files import DatasetFiles, DatasetTooLarge
from app.datasets.schemas import check_name
from app.datasets.uploads import accept_upload
from app.datasets.validate import InvalidDataset
from app.deps import SessionDep, database_of
from app.errors import DomainError, InvalidInput, NotFound
from app.pages.common import Browser, BrowserDep, check_csrf, get_browser, redirect, render
from app.runs import store, submit
from app.runs.job_form import default_values, form_fields, validate_form, values_from_run
from app.settings import Settings

router = APIRouter(include_in_schema=False)
FORM_OVERHEAD = 64 * 1024  # multipart boundaries and the small fields around the file


def _form_page(
    request: Request,
    browser: Browser,
    values: dict[str, str],
    errors: dict[str, str],
    *,
    session: Session,
    status_code: int = 200,
    flashes: list[dict[str, str]] | None = None,
) -> HTMLResponse:
    settings: Settings = request.app.state.settings
    context: dict[str, Any] = {
        "nav": "new",
        "groups": form_fields(),
        "values": values,
        "errors": errors,
        "datasets": datasets.readable_datasets(session=session, actor=browser.actor),
        "max_dataset_mib": max(1, settings.max_dataset_bytes // (1024 * 1024)),
    }
    if flashes:
        context["flashes"] = flashes
    return render(request, browser, "new_job.html", context, status_code=status_code)


@router.get("/jobs/new", response_class=HTMLResponse)
def new_job(
    request: Request,
    browser: BrowserDep,
    session: SessionDep,
    clone: int | None = None,
    dataset: int | None = None,
) -> HTMLResponse:
    values = default_values()
    flashes: list[dict[str, str]] = []
    if clone is not None:
        try:
            check_run(session=session, actor=browser.actor, run_id=clone, action="read")
            run = store.get_run(session=session, run_id=clone)
        except DomainError as exc:
            raise HTTPException(404, detail=exc.message) from exc
        values = values_from_run(run.config, project=run.project.name, tags=list(run.tags))
        values["name"] = f"{run.name or 'run ' + str(run.id)} (clone)"[:200]
    if dataset is not None:  # back from an upload: that dataset picked, in its project
        try:
            picked = datasets.get_dataset(session=session, actor=browser.actor, dataset_id=dataset)
        except DomainError as exc:
            raise HTTPException(404, detail=exc.message) from exc
        values |= {"dataset": "npz", "dataset_id": str(picked.id), "project": picked.project}
        rows = f", {picked.rows} rows" if picked.rows is not None else ""
        flashes.append({"kind": "ok", "text": f"Dataset {picked.name!r} (#{picked.id}{rows}) is ready."})
    return _form_page(request, browser, values, {}, session=session, flashes=flashes)


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
        return _form_page(request, browser, kept, result.errors, session=session, status_code=422)
    try:
        check_new_runs(session=session, actor=browser.actor, project_name=result.submit.project)
    except DomainError as exc:
        errors = {"project": exc.message}
        return _form_page(request, browser, kept, errors, session=session, status_code=exc.status_code)
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
        return _form_page(request, browser, kept, {field: exc.message}, session=session, status_code=422)
    except NotFound as exc:  # a dataset_id that is not one of the project's datasets
        session.rollback()
        message = exc.message.removeprefix("spec.dataset_id: ")
        return _form_page(request, browser, kept, {"dataset_id": message}, session=session, status_code=404)
    if len(created) == 1:
        return redirect(request, f"/runs/{created[0].id}")
    return redirect(request, f"/compare?sweep={created[0].sweep_id}")


@router.post("/jobs/datasets", response_model=None)
async def upload_dataset(request: Request) -> Response:
    """Upload an .npz from the job form (multipart: ``file``, ``project``, ``name``, ``csrf_token``).

    No database session is held while the file arrives (a write session would hold SQLite's lock):
    the browser and the role are looked up in short read sessions, the dataset is recorded in one
    short write transaction once the file has passed its checks. Refused: 413/422 with the form
    re-rendered and the message under the upload, nothing stored."""
    settings: Settings = request.app.state.settings
    browser = await run_in_threadpool(_browser, request)
    files = DatasetFiles(settings.artifact_dir, max_bytes=settings.max_dataset_bytes)
    declared = request.headers.get("content-length", "")
    if not declared.isdigit() or int(declared) > files.max_bytes + FORM_OVERHEAD:
        status = 411 if not declared.isdigit() else 413
        message = (
            "send the form with a Content-Length" if status == 411 else str(DatasetTooLarge(files.max_bytes))
        )
        return await _upload_refused(request, browser, {}, "dataset_file", message, status)
    form = await request.form(max_files=1, max_fields=10)
    try:
        fields = {key: value for key, value in form.items() if isinstance(value, str)}
        check_csrf(request, browser, fields.get("csrf_token"))
        return await _store_upload(request, browser, files, fields, form.get("file"))
    finally:
        await form.close()


async def _store_upload(
    request: Request, browser: Browser, files: DatasetFiles, fields: dict[str, str], upload: Any
) -> Response:
    project = fields.get("project", "").strip() or "default"
    if not isinstance(upload, UploadFile) or not upload.filename:
        message = "choose an .npz file to upload"
        return await _upload_refused(request, browser, fields, "dataset_file", message, 422)
    name = fields.get("name", "").strip() or upload.filename.rsplit("/", 1)[-1][:200]
    try:
        name = check_name(name)
    except ValueError as exc:
        return await _upload_refused(request, browser, fields, "dataset_name", str(exc), 422)
    try:
        await run_in_threadpool(_check_editor, request, browser.actor, project)
    except DomainError as exc:
        return await _upload_refused(
            request, browser, fields, "dataset_project", exc.message, exc.status_code
        )
    try:
        received = await run_in_threadpool(files.receive_file, upload.file)
        picked = await run_in_threadpool(_accept, request, files, browser.actor, project, name, received)
    except DatasetTooLarge as exc:
        return await _upload_refused(request, browser, fields, "dataset_file", str(exc), 413)
    except InvalidDataset as exc:
        message = f"{exc.field}: {exc.message}"
        return await _upload_refused(request, browser, fields, "dataset_file", message, exc.status_code)
    except DomainError as exc:  # the role changed meanwhile, or a bad name
        return await _upload_refused(request, browser, fields, "dataset_name", exc.message, exc.status_code)
    return redirect(request, f"/jobs/new?dataset={picked}")


def _browser(request: Request) -> Browser:
    with database_of(request).session(write=False) as session:
        return get_browser(request, session)


def _check_editor(request: Request, actor: Actor, project: str) -> None:
    with database_of(request).session(write=False) as session:
        datasets.writable_project(session=session, actor=actor, project=project)


def _accept(
    request: Request, files: DatasetFiles, actor: Actor, project: str, name: str, received: Any
) -> int:
    def record(storage_name: str, summary: dict[str, Any]) -> int:
        with database_of(request).transaction(write=True) as session:
            added = datasets.add_upload(
                session=session,
                actor=actor,
                project=project,
                name=name,
                storage_name=storage_name,
                sha256=received.sha256,
                size=received.size,
                summary=summary,
            )
            return added.id

    return accept_upload(received, files=files, record=record)


async def _upload_refused(
    request: Request, browser: Browser, fields: dict[str, str], field: str, message: str, status_code: int
) -> HTMLResponse:
    values = default_values() | {"project": fields.get("project", "default") or "default"}
    values |= {"dataset": "npz", "dataset_name": fields.get("name", "")}

    def page() -> HTMLResponse:
        with database_of(request).session(write=False) as session:
            return _form_page(
                request, browser, values, {field: message}, session=session, status_code=status_code
            )

    return await run_in_threadpool(page)
