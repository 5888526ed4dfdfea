"""Reports and share links through the pages (app/pages/reports.py, app/reports.py): saving from
the compare view, pinned vs live, sanitised notes, roles, exports, and what a link can and cannot do."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update
from teamsite import TeamSite, page_csrf, team_site

from app.auth.models import ShareLink
from app.models import utcnow

NOTES = (
    "**Finding**: VICReg keeps rank.\n\n"
    "<script>alert(1)</script> [bad](javascript:alert(2)) <img src=x onerror=alert(3)>"
)


@pytest.fixture
def site(tmp_path: Path) -> Iterator[TeamSite]:
    with team_site(tmp_path) as built:
        for run_id in (built.team_run, built.other_run):
            built.seed.claim(run_id)
            built.seed.epoch(run_id, 0, rho=0.6)
            built.seed.epoch(run_id, 1, rho=0.4)
        yield built


def save_report(
    client: TestClient, site: TeamSite, *, mode: str = "pinned", title: str = "Rank study"
) -> int:
    compare = client.get(f"/compare?runs={site.team_run},{site.other_run}&stat=mean_sv")
    query = re.search(r'name="query" value="([^"]+)"', compare.text)
    assert query, "the compare page has a Save as report form"
    form = {
        "project": "team",
        "title": title,
        "notes": NOTES,
        "mode": mode,
        "query": query.group(1).replace("&amp;", "&"),
        "csrf_token": page_csrf(client),
    }
    response = client.post("/reports", data=form, follow_redirects=False)
    assert response.status_code == 303, response.text
    return int(response.headers["location"].rsplit("/", 1)[1])


def chart_data(html: str) -> dict[str, object]:
    match = re.search(r'<script type="application/json" id="compare-data">(.*?)</script>', html, re.S)
    assert match
    return dict(json.loads(match.group(1)))


def share(client: TestClient, report_id: int, days: str = "") -> str:
    form = {"label": "reading group", "expires_days": days, "csrf_token": page_csrf(client)}
    page = client.post(f"/reports/{report_id}/shares", data=form)
    assert page.status_code == 200, page.text
    match = re.search(r"https?://[^\s<]+/s/([A-Za-z0-9_\-]+)", page.text)
    assert match
    return match.group(1)


def test_saved_report_shows_the_compare_charts_with_sanitised_notes(site: TeamSite) -> None:
    editor = site.client("editor@example.org")
    report_id = save_report(editor, site)
    page = editor.get(f"/reports/{report_id}")
    assert page.status_code == 200 and "Rank study" in page.text
    assert "<strong>Finding</strong>" in page.text
    notes = page.text.split('id="report-notes"')[1].split("</div>")[0]
    assert "<script" not in notes and "javascript:" not in notes and "onerror" not in notes
    data = chart_data(page.text)
    assert [r["id"] for r in data["runs"]] == [site.team_run]  # type: ignore[index]
    assert sorted(data["curves"]) == [str(site.team_run)]  # type: ignore[arg-type]
    for chart in ("chart-overlay", "chart-grouped", "chart-sweep", f"hist-{site.team_run}"):
        assert f'id="{chart}"' in page.text
    assert f"#{site.other_run}" not in page.text  # the other project's run stays out
    listed = editor.get("/projects/team").text
    assert f'href="/reports/{report_id}"' in listed


def test_pinned_report_keeps_its_data_and_live_report_follows_new_epochs(site: TeamSite) -> None:
    editor = site.client("editor@example.org")
    pinned = save_report(editor, site, mode="pinned")
    live = save_report(editor, site, mode="live", title="Live")
    site.seed.epoch(site.team_run, 2, rho=0.1)
    pinned_curve = chart_data(editor.get(f"/reports/{pinned}").text)["curves"][str(site.team_run)]  # type: ignore[index]
    live_curve = chart_data(editor.get(f"/reports/{live}").text)["curves"][str(site.team_run)]  # type: ignore[index]
    assert [x for x, _ in pinned_curve] == [0, 1]
    assert [x for x, _ in live_curve] == [0, 1, 2]


def test_report_roles_viewer_reads_outsider_gets_404(site: TeamSite) -> None:
    report_id = save_report(site.client("editor@example.org"), site)
    viewer = site.client("viewer@example.org")
    assert viewer.get(f"/reports/{report_id}").status_code == 200
    assert 'id="share-form"' not in viewer.get(f"/reports/{report_id}").text
    form = {
        "project": "team",
        "title": "mine",
        "query": f"runs={site.team_run}",
        "csrf_token": page_csrf(viewer),
    }
    assert viewer.post("/reports", data=form).status_code == 403
    assert (
        viewer.post(f"/reports/{report_id}/shares", data={"csrf_token": page_csrf(viewer)}).status_code == 403
    )
    outsider = site.client("outsider@example.org")
    for path in (
        f"/reports/{report_id}",
        f"/reports/{report_id}/export.html",
        f"/reports/{report_id}/export.csv",
    ):
        assert outsider.get(path).status_code == 404, path


def test_share_link_reads_the_report_without_login_and_nothing_else(site: TeamSite) -> None:
    editor = site.client("editor@example.org")
    report_id = save_report(editor, site)
    other_report = save_report(editor, site, title="Second report")
    token = share(editor, report_id)
    assert len(token) >= 43  # secrets.token_urlsafe(32): 256 random bits
    anonymous = site.client()
    page = anonymous.get(f"/s/{token}")
    assert page.status_code == 200 and "Rank study" in page.text and "Second report" not in page.text
    assert page.headers["referrer-policy"] == "no-referrer"
    assert "noindex" in page.headers["x-robots-tag"] and "set-cookie" not in page.headers
    assert chart_data(page.text)["runs"] == chart_data(editor.get(f"/reports/{report_id}").text)["runs"]
    # read-only: no write method on the link, and the token is no credential anywhere else
    assert anonymous.post(f"/s/{token}", data={}).status_code == 405
    bearer = {"Authorization": f"Bearer {token}"}
    assert anonymous.get(f"/api/v1/runs/{site.team_run}", headers=bearer).status_code == 401
    assert anonymous.post("/api/v1/jobs", json={"project": "team"}, headers=bearer).status_code == 401
    assert anonymous.get(f"/api/v1/reports/{other_report}", headers=bearer).status_code == 401
    assert anonymous.get(f"/reports/{other_report}", follow_redirects=False).status_code == 303  # to /login
    assert anonymous.get(f"/runs/{site.team_run}", follow_redirects=False).status_code == 303
    csv_body = anonymous.get(f"/s/{token}/export.csv")
    assert csv_body.status_code == 200 and csv_body.headers["referrer-policy"] == "no-referrer"
    assert (
        csv_body.text.startswith("chart,series,run_id,x,y,std,n")
        and f",{site.other_run}," not in csv_body.text
    )
    with site.db.session(write=False) as session:
        stored = session.scalars(select(ShareLink.token_hash)).all()
    assert token not in stored and all(len(h) == 64 for h in stored)


def test_share_link_stops_working_when_revoked_404_or_expired_410(site: TeamSite) -> None:
    editor = site.client("editor@example.org")
    report_id = save_report(editor, site)
    revoked, expiring, kept = (
        share(editor, report_id),
        share(editor, report_id, days="1"),
        share(editor, report_id),
    )
    page = editor.get(f"/reports/{report_id}").text
    link_ids = re.findall(rf'action="/reports/{report_id}/shares/(\d+)/revoke"', page)
    assert len(link_ids) == 3
    newest_first = sorted(map(int, link_ids))
    response = editor.post(
        f"/reports/{report_id}/shares/{newest_first[0]}/revoke", data={"csrf_token": page_csrf(editor)}
    )
    assert response.status_code == 200
    with site.db.transaction() as session:
        session.execute(
            update(ShareLink)
            .where(ShareLink.id == newest_first[1])
            .values(expires_at=utcnow() - timedelta(seconds=1))
        )
    anonymous = site.client()
    assert anonymous.get(f"/s/{revoked}").status_code == 404
    assert anonymous.get(f"/s/{revoked}/export.html").status_code == 404
    gone = anonymous.get(f"/s/{expiring}")
    assert gone.status_code == 410 and gone.headers["referrer-policy"] == "no-referrer"
    assert anonymous.get(f"/s/{kept}").status_code == 200
    assert anonymous.get("/s/not-a-real-token-at-all").status_code == 404


def test_export_html_is_one_self_contained_file(site: TeamSite) -> None:
    editor = site.client("editor@example.org")
    report_id = save_report(editor, site)
    export = editor.get(f"/reports/{report_id}/export.html")
    assert export.status_code == 200 and "attachment" in export.headers["content-disposition"]
    html = export.text
    assert "<script src=" not in html and '<link rel="stylesheet"' not in html  # nothing fetched
    assert "Plotly" in html and len(html) > 1_000_000  # plotly.js inlined
    assert chart_data(html)["curves"]
