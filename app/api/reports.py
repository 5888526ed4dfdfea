"""Reports over the API: save a compare view, list a project's reports, read one (JSON or the CSV
of its series), and manage its share links. Viewers read; editors save, share and revoke."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Response

from app.api.access import UserActorDep
from app.auth import roles
from app.compare import reports
from app.compare.schemas import ReportCreate, ReportPublic, ShareCreate, ShareCreated, SharePublic
from app.deps import HEAVY_READ, MAX_ID, SessionDep, SettingsDep

router = APIRouter(prefix="/api/v1", tags=["reports"])
IdPath = Annotated[int, Path(ge=1, le=MAX_ID)]
NamePath = Annotated[str, Path(min_length=1, max_length=64)]


def _public(report: Any, project: str) -> ReportPublic:
    return ReportPublic(
        id=report.id,
        project=project,
        title=report.title,
        pinned=report.pinned,
        created_at=report.created_at,
        url=f"/reports/{report.id}",
    )


@router.post("/reports", status_code=201, response_model=ReportPublic)
def create_report(data: ReportCreate, session: SessionDep, actor: UserActorDep) -> ReportPublic:
    """Save the compare view ``query`` (its runs of ``project`` only) as a report (editors)."""
    report = reports.create_report(
        session=session,
        actor=actor,
        project=data.project,
        title=data.title,
        notes=data.notes,
        pinned=data.pinned,
        query_string=data.query,
    )
    session.commit()
    return _public(report, data.project)


@router.get("/projects/{name}/reports", response_model=list[ReportPublic])
def list_reports(name: NamePath, session: SessionDep, actor: UserActorDep) -> list[ReportPublic]:
    project = roles.project_named(session=session, actor=actor, name=name, action="read")
    return [_public(r, project.name) for r in reports.project_reports(session=session, project_id=project.id)]


@router.get("/reports/{report_id}")
def get_report(report_id: IdPath, session: SessionDep, actor: UserActorDep) -> dict[str, Any]:
    """The report's content: title, sanitised notes, runs, config diff and the charts' data."""
    report = reports.get_report(session=session, actor=actor, report_id=report_id)
    view = reports.view(session=session, report=report)
    return {
        "id": view.id,
        "project": view.project,
        "title": view.title,
        "notes_html": view.notes_html,
        "pinned": view.pinned,
        "saved_at": view.saved_at.isoformat(),
        "runs": view.runs,
        "diff": view.diff,
        "data": view.page_data,
    }


@router.get("/reports/{report_id}/series.csv", dependencies=[HEAVY_READ])
def report_csv(report_id: IdPath, session: SessionDep, actor: UserActorDep) -> Response:
    report = reports.get_report(session=session, actor=actor, report_id=report_id)
    body = reports.series_csv(reports.view(session=session, report=report))
    headers = {"Content-Disposition": f'attachment; filename="report-{report_id}-series.csv"'}
    return Response(body, media_type="text/csv; charset=utf-8", headers=headers)


@router.get("/reports/{report_id}/shares", response_model=list[SharePublic])
def list_shares(report_id: IdPath, session: SessionDep, actor: UserActorDep) -> list[SharePublic]:
    reports.get_report(session=session, actor=actor, report_id=report_id, action="write")
    return [
        SharePublic.model_validate(s, from_attributes=True)
        for s in reports.shares(session=session, report_id=report_id)
    ]


@router.post("/reports/{report_id}/shares", status_code=201, response_model=ShareCreated)
def create_share(
    report_id: IdPath, data: ShareCreate, session: SessionDep, settings: SettingsDep, actor: UserActorDep
) -> ShareCreated:
    """A read-only link to this report for anyone who has it (optional expiry); shown once."""
    report = reports.get_report(session=session, actor=actor, report_id=report_id, action="write")
    token = reports.create_share(
        session=session, actor=actor, report=report, expires_at=data.expires_at, label=data.label
    )
    link = reports.shares(session=session, report_id=report_id)[0]
    session.commit()
    url = f"{settings.public_url.rstrip('/')}/s/{token}"
    return ShareCreated(**SharePublic.model_validate(link, from_attributes=True).model_dump(), url=url)


@router.delete("/reports/{report_id}/shares/{link_id}", status_code=204)
def revoke_share(report_id: IdPath, link_id: IdPath, session: SessionDep, actor: UserActorDep) -> Response:
    report = reports.get_report(session=session, actor=actor, report_id=report_id, action="write")
    reports.revoke_share(session=session, actor=actor, report=report, link_id=link_id)
    session.commit()
    return Response(status_code=204)
