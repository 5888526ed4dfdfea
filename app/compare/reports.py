"""Reports: a compare view saved with a title and Markdown notes, pinned (the chart data is stored
as JSON when saved) or live (re-queried on every view), plus share links and the CSV of the series.

A report belongs to one project and only ever shows that project's runs, whoever looks at it (a
member, or anyone holding a share link), so a link never reveals runs of another project.
"""

from __future__ import annotations

import hashlib
import io
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs

import markdown
import nh3
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.auth.accounts import Gone
from app.auth.models import Report, ShareLink
from app.auth.roles import Action, Actor, check
from app.compare.view import CompareData, CompareQuery, build_compare, page_data
from app.errors import InvalidInput, NotFound
from app.models import Project, Run, utcnow
from app.web import csv_safe
from app.web.ints import parse_natural
from app.web.templating import tojson_safe

MAX_TITLE = 200
MAX_NOTES = 50_000


@dataclass(frozen=True)
class ReportView:
    """Everything the report page, the shared page and the exports show."""

    id: int
    project: str
    title: str
    notes_html: str
    pinned: bool
    saved_at: datetime
    compare_url: str
    page_data: dict[str, Any]
    runs: list[dict[str, Any]]
    diff: list[dict[str, Any]]
    notices: list[str] = field(default_factory=list)  # e.g. "run #12 was deleted …"


_IMG = re.compile(r"<img\b([^>]*)>")
_ATTR = re.compile(r'([a-z]+)="([^"]*)"')


def render_notes(text: str) -> str:
    """Markdown -> HTML, sanitised by nh3 (no scripts, no event handlers, safe link targets).

    Images become links to them: a report (and its exported file, and a shared page) never fetches
    anything from another host when it is opened, so it cannot report who read it and when."""
    html = nh3.clean(markdown.markdown(text, extensions=["tables", "fenced_code"]))
    return nh3.clean(_IMG.sub(_image_link, html))


def _image_link(match: re.Match[str]) -> str:
    """``<img src=… alt=…>`` (as nh3 writes it: attribute values quoted and escaped) -> a link."""
    attrs = dict(_ATTR.findall(match.group(1)))
    label = attrs.get("alt") or attrs.get("src") or "image"
    if not attrs.get("src"):
        return label
    return f'<a href="{attrs["src"]}" rel="noopener noreferrer">image: {label}</a>'


def _params(query_string: str) -> dict[str, list[str]]:
    """The parameters of a compare view: its query string, with or without ``?``, or its address
    (``/compare?…``, as the page's own form sends it)."""
    text = query_string.strip()
    if text.startswith("/compare"):
        text = text.removeprefix("/compare")
    return parse_qs(text.lstrip("?"), keep_blank_values=False)


def project_compare(*, session: Session, query_string: str, project_id: int) -> CompareData:
    """The compare view of ``query_string`` limited to the runs of one project."""
    query, _problems = CompareQuery.from_params(_params(query_string))
    return build_compare(session=session, query=query, visible=[project_id])


def snapshot(data: CompareData) -> dict[str, Any]:
    """The JSON a pinned report keeps: the charts' data and view settings, the runs, the config diff."""
    return {
        "page_data": tojson_safe(page_data(data)),
        "runs": [
            {"id": r.id, "name": r.name or f"run {r.id}", "status": r.status, "sweep_id": r.sweep_id}
            for r in data.runs
        ],
        "diff": [{"key": d.key, "values": tojson_safe(d.values), "differs": d.differs} for d in data.diff],
    }


def create_report(
    *, session: Session, actor: Actor, project: str, title: str, notes: str, pinned: bool, query_string: str
) -> Report:
    """Save a compare view as a report of ``project`` (editors)."""
    found = session.scalar(select(Project).where(Project.name == project))
    if found is None:
        raise NotFound(f"project {project!r} does not exist")
    check(
        session=session,
        actor=actor,
        project_id=found.id,
        action="write",
        missing=f"project {project!r} does not exist",
    )
    title = title.strip()
    if not 1 <= len(title) <= MAX_TITLE:
        raise InvalidInput(["title"], f"a title needs 1 to {MAX_TITLE} characters")
    if len(notes) > MAX_NOTES:
        raise InvalidInput(["notes"], f"notes are limited to {MAX_NOTES} characters")
    data = project_compare(session=session, query_string=query_string, project_id=found.id)
    if not data.runs:
        raise InvalidInput(["query"], f"the view has no runs of project {project!r}; pick runs first")
    # the resolved view (grouping, axes, smoothing, log y): the report reproduces it as saved. Of the
    # runs it names, those of the project: a live report that later misses one knows it was purged
    in_project = {run.id for run in data.runs}
    named = [run_id for run_id in data.view.runs if run_id in in_project]
    canonical = data.view.url(runs=named).removeprefix("/compare?")
    report = Report(
        project_id=found.id,
        title=title,
        notes=notes,
        pinned=pinned,
        query=canonical,
        snapshot=snapshot(data) if pinned else None,
        created_by=actor.user_id,
        created_at=utcnow(),
    )
    session.add(report)
    session.flush()
    return report


def get_report(*, session: Session, actor: Actor, report_id: int, action: Action = "read") -> Report:
    report = session.get(Report, report_id)
    missing = f"report {report_id} does not exist"
    if report is None:
        raise NotFound(missing)
    check(session=session, actor=actor, project_id=report.project_id, action=action, missing=missing)
    return report


def project_reports(*, session: Session, project_id: int) -> list[Report]:
    stmt = select(Report).where(Report.project_id == project_id).order_by(Report.id.desc())
    return list(session.scalars(stmt))


def view(*, session: Session, report: Report) -> ReportView:
    """The report's content: its snapshot when pinned, else the view re-queried now."""
    stored = report.snapshot if report.pinned else None
    pinned = stored is not None
    if stored is None:
        data = project_compare(session=session, query_string=report.query, project_id=report.project_id)
        stored = snapshot(data)
    # pinned: the runs it saved; live: the runs its query names (those of the project when saved)
    named = (
        [int(r["id"]) for r in stored["runs"]]
        if pinned
        else CompareQuery.from_params(_params(report.query))[0].runs
    )
    project = session.get(Project, report.project_id)
    return ReportView(
        id=report.id,
        project=project.name if project else "",
        title=report.title,
        notes_html=render_notes(report.notes),
        pinned=report.pinned,
        saved_at=report.created_at,
        compare_url="/compare?" + report.query,
        page_data=stored["page_data"],
        runs=stored["runs"],
        diff=stored["diff"],
        notices=gone_runs(session=session, project_id=report.project_id, run_ids=named, pinned=pinned),
    )


def gone_runs(*, session: Session, project_id: int, run_ids: Sequence[int], pinned: bool) -> list[str]:
    """What a report says about the runs it names that were deleted since: in the trash, or purged (a
    report names only runs of its project: a pinned one its saved runs, a live one the runs its query
    named that were in the project when it was saved). A pinned report still shows their saved
    data, a live one no longer finds them."""
    ids = sorted(set(run_ids))
    if not ids:
        return []
    stmt = select(Run.id, Run.deleted_at).where(Run.id.in_(ids), Run.project_id == project_id)
    found = {row.id: row.deleted_at for row in session.execute(stmt)}
    kept = "this report shows the data saved with it" if pinned else "this report no longer shows it"
    notes = []
    for run_id in ids:
        if run_id not in found:  # it was in the project when the report was saved (create_report)
            notes.append(f"run #{run_id} was deleted permanently; {kept}")
        elif found[run_id] is not None:
            when = found[run_id].strftime("%Y-%m-%d")
            notes.append(f"run #{run_id} was deleted on {when} (in the project's trash); {kept}")
    return notes


def series_csv(report: ReportView) -> str:
    """The series behind the charts, one point per row: per-run curves, group bands, sweep points."""
    data = report.page_data
    names = {str(r["id"]): r["name"] for r in data.get("runs", [])}
    out = io.StringIO()
    writer = csv_safe.writer(out)  # run names and config values are text people typed: defused
    writer.writerow(["chart", "series", "run_id", "x", "y", "std", "n"])
    for run_id, points in data.get("curves", {}).items():
        for x, y in points:
            run = parse_natural(run_id)  # a number in the file, as the other numbers
            writer.writerow([data.get("stat", ""), names.get(run_id, run_id), run, x, y, None, None])
    for group in data.get("groups", []):
        for x, mean, std, n in zip(group["x"], group["mean"], group["std"], group["n"], strict=True):
            writer.writerow([f"{data.get('stat', '')} (group mean)", group["label"], None, x, mean, std, n])
    for line in data.get("sweep", []):
        for x, mean, std, n in zip(line["x"], line["mean"], line["std"], line["n"], strict=True):
            writer.writerow(
                [
                    f"final {data.get('metric', '')} vs {data.get('x', '')}",
                    line["label"],
                    None,
                    x,
                    mean,
                    std,
                    n,
                ]
            )
    return out.getvalue()


# Share links ---------------------------------------------------------------------------------


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def create_share(
    *, session: Session, actor: Actor, report: Report, expires_at: datetime | None, label: str = ""
) -> str:
    """A new read-only link to ``report`` (editors); returns the token, shown only now."""
    check(
        session=session,
        actor=actor,
        project_id=report.project_id,
        action="write",
        missing=f"report {report.id} does not exist",
    )
    if expires_at is not None and expires_at.tzinfo is None:
        raise InvalidInput(["expires_at"], "give the expiry with a timezone, e.g. 2030-01-01T00:00:00Z")
    if expires_at is not None and expires_at <= utcnow():
        raise InvalidInput(["expires_at"], "the expiry must be in the future (or empty for none)")
    token = secrets.token_urlsafe(32)  # 256 random bits
    link = ShareLink(
        report_id=report.id,
        token_hash=_hash(token),
        label=label.strip()[:200],
        created_by=actor.user_id,
        created_at=utcnow(),
        expires_at=expires_at,
    )
    session.add(link)
    session.flush()
    return token


def shares(*, session: Session, report_id: int) -> list[ShareLink]:
    stmt = select(ShareLink).where(ShareLink.report_id == report_id).order_by(ShareLink.id.desc())
    return list(session.scalars(stmt))


def revoke_share(*, session: Session, actor: Actor, report: Report, link_id: int) -> None:
    check(
        session=session,
        actor=actor,
        project_id=report.project_id,
        action="write",
        missing=f"report {report.id} does not exist",
    )
    link = session.get(ShareLink, link_id)
    if link is None or link.report_id != report.id:
        raise NotFound(f"share link {link_id} does not exist")
    if link.revoked_at is None:
        link.revoked_at = utcnow()
    session.flush()


def resolve_share(*, session: Session, token: str) -> Report:
    """The report behind a share token: NotFound if unknown or revoked, Gone (410) if expired."""
    if not token or len(token) > 200:
        raise NotFound("this link does not exist")
    link = session.scalar(select(ShareLink).where(ShareLink.token_hash == _hash(token)))
    if link is None or link.revoked_at is not None:
        raise NotFound("this link does not exist or was revoked")
    if link.expires_at is not None and link.expires_at <= utcnow():
        raise Gone("this link has expired")
    report = session.get(Report, link.report_id)
    if report is None:  # pragma: no cover - cascades delete the links with the report
        raise NotFound("this link does not exist")
    return report
