"""Report pages: save from the compare page, the report page (charts as on the compare page, notes,
share links), exports (one self-contained HTML file; CSV of the series) and the shared page
``/s/{token}`` that anyone holding the link can read without signing in."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, Response

from app.auth import roles
from app.auth.models import Report
from app.compare import reports
from app.compare.export import export_filename, export_html
from app.deps import HEAVY_READ, SessionDep
from app.errors import DomainError
from app.models import utcnow
from app.pages.account import NO_STORE, actor_of
from app.pages.common import Browser, BrowserDep, check_csrf, redirect, render

router = APIRouter(include_in_schema=False)
CsrfForm = Annotated[str, Form()]
SHARED_HEADERS = {
    "Referrer-Policy": "no-referrer",
    "X-Robots-Tag": "noindex, nofollow",
    "Cache-Control": "private, no-store",
}


@router.post("/reports", response_model=None)
def save_report(
    request: Request,
    browser: BrowserDep,
    session: SessionDep,
    project: Annotated[str, Form(max_length=64)] = "",
    title: Annotated[str, Form(max_length=200)] = "",
    notes: Annotated[str, Form(max_length=50_000)] = "",
    mode: Annotated[str, Form(pattern="^(pinned|live)$")] = "pinned",
    query: Annotated[str, Form(max_length=10_000)] = "",
    csrf_token: CsrfForm = "",
) -> Response:
    """Save the compare view (the form on the compare page) and open the new report."""
    check_csrf(request, browser, csrf_token)
    report = reports.create_report(
        session=session,
        actor=actor_of(browser),
        project=project,
        title=title,
        notes=notes,
        pinned=mode == "pinned",
        query_string=query.removeprefix("/compare").removeprefix("?"),
    )
    session.commit()
    return redirect(request, f"/reports/{report.id}")


def _report_page(
    request: Request, browser: Browser, session: Any, report: Report, *, new_link: str = ""
) -> HTMLResponse:
    actor = actor_of(browser)
    role = roles.effective_role(session=session, actor=actor, project_id=report.project_id)
    editor = roles.role_at_least(role, "editor")
    context = {
        "nav": "projects",
        "view": reports.view(session=session, report=report),
        "member": True,
        "can_edit": editor,
        "links": reports.shares(session=session, report_id=report.id) if editor else [],
        "new_link": new_link,
        "now": utcnow(),
    }
    response = render(request, browser, "report.html", context)
    response.headers.update(NO_STORE)
    return response


@router.get("/reports/{report_id}", response_class=HTMLResponse, dependencies=[HEAVY_READ])
def report_page(report_id: int, request: Request, browser: BrowserDep, session: SessionDep) -> HTMLResponse:
    report = reports.get_report(session=session, actor=actor_of(browser), report_id=report_id)
    return _report_page(request, browser, session, report)


@router.post("/reports/{report_id}/shares", response_class=HTMLResponse)
def create_share(
    report_id: int,
    request: Request,
    browser: BrowserDep,
    session: SessionDep,
    label: Annotated[str, Form(max_length=200)] = "",
    expires_days: Annotated[str, Form(max_length=8)] = "",
    csrf_token: CsrfForm = "",
) -> HTMLResponse:
    """A new share link, shown once on the page that answers."""
    check_csrf(request, browser, csrf_token)
    actor = actor_of(browser)
    report = reports.get_report(session=session, actor=actor, report_id=report_id, action="write")
    days = expires_days.strip()
    if days and (not days.isdigit() or not 1 <= int(days) <= 3650):
        raise DomainError("expires_days: a whole number of days from 1 to 3650, or empty for no expiry")
    expires = utcnow() + timedelta(days=int(days)) if days else None
    token = reports.create_share(session=session, actor=actor, report=report, expires_at=expires, label=label)
    session.commit()
    url = f"{str(request.base_url).rstrip('/')}/s/{token}"
    return _report_page(request, browser, session, report, new_link=url)


@router.post("/reports/{report_id}/shares/{link_id}/revoke", response_model=None)
def revoke_share(
    report_id: int,
    link_id: int,
    request: Request,
    browser: BrowserDep,
    session: SessionDep,
    csrf_token: CsrfForm = "",
) -> Response:
    check_csrf(request, browser, csrf_token)
    actor = actor_of(browser)
    report = reports.get_report(session=session, actor=actor, report_id=report_id, action="write")
    reports.revoke_share(session=session, actor=actor, report=report, link_id=link_id)
    session.commit()
    return redirect(request, f"/reports/{report_id}")


@router.post("/reports/{report_id}/delete", response_model=None)
def delete_report(
    report_id: int, request: Request, browser: BrowserDep, session: SessionDep, csrf_token: CsrfForm = ""
) -> Response:
    check_csrf(request, browser, csrf_token)
    report = reports.get_report(session=session, actor=actor_of(browser), report_id=report_id, action="write")
    project = report.project_id
    session.delete(report)
    session.commit()
    from app.models import Project

    found = session.get(Project, project)
    return redirect(request, f"/projects/{found.name}" if found else "/projects")


def _html_download(view: reports.ReportView) -> Response:
    headers = {"Content-Disposition": f'attachment; filename="{export_filename(view, "html")}"'}
    return Response(export_html(view), media_type="text/html; charset=utf-8", headers=headers)


def _csv_download(view: reports.ReportView) -> Response:
    headers = {"Content-Disposition": f'attachment; filename="{export_filename(view, "csv")}"'}
    return Response(reports.series_csv(view), media_type="text/csv; charset=utf-8", headers=headers)


@router.get("/reports/{report_id}/export.html", dependencies=[HEAVY_READ])
def export_report_html(report_id: int, browser: BrowserDep, session: SessionDep) -> Response:
    report = reports.get_report(session=session, actor=actor_of(browser), report_id=report_id)
    return _html_download(reports.view(session=session, report=report))


@router.get("/reports/{report_id}/export.csv", dependencies=[HEAVY_READ])
def export_report_csv(report_id: int, browser: BrowserDep, session: SessionDep) -> Response:
    report = reports.get_report(session=session, actor=actor_of(browser), report_id=report_id)
    return _csv_download(reports.view(session=session, report=report))


# Shared pages: no sign-in, no cookies, no referrer, not indexed. ----------------------------


def _shared(response: Response) -> Response:
    response.headers.update(SHARED_HEADERS)
    return response


@router.get("/s/{token}", response_class=HTMLResponse, dependencies=[HEAVY_READ])
def shared_report(token: str, request: Request, session: SessionDep) -> Response:
    """The report behind a share link, read-only: 404 when unknown or revoked, 410 when expired."""
    try:
        report = reports.resolve_share(session=session, token=token)
    except DomainError as exc:
        context = {"status": exc.status_code, "message": exc.message}
        return _shared(render(request, None, "shared_error.html", context, status_code=exc.status_code))
    view = reports.view(session=session, report=report)
    context = {"view": view, "member": False, "can_edit": False, "links": [], "share_base": f"/s/{token}"}
    return _shared(render(request, None, "shared.html", context))


@router.get("/s/{token}/export.html", dependencies=[HEAVY_READ])
def shared_export_html(token: str, session: SessionDep) -> Response:
    return _shared(
        _html_download(
            reports.view(session=session, report=reports.resolve_share(session=session, token=token))
        )
    )


@router.get("/s/{token}/export.csv", dependencies=[HEAVY_READ])
def shared_export_csv(token: str, session: SessionDep) -> Response:
    return _shared(
        _csv_download(
            reports.view(session=session, report=reports.resolve_share(session=session, token=token))
        )
    )
