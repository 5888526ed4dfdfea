"""Bulk actions through the runs page's form (POST /runs/bulk), the run page's lifecycle note, and
reports that name a run deleted since: they stay readable and say so."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update
from teamsite import TeamSite, page_csrf, team_site

from app.auth.models import Report
from app.models import Run


@pytest.fixture
def site(tmp_path: Path) -> Iterator[TeamSite]:
    with team_site(tmp_path) as built:
        for run_id in (built.team_run, built.other_run):
            built.seed.claim(run_id)
            built.seed.epoch(run_id, 0, rho=0.6)
            built.seed.epoch(run_id, 1, rho=0.4)
        with built.db.transaction() as session:  # finished: they may be archived and deleted
            session.execute(update(Run).values(status="succeeded"))
        yield built


def act(client: TestClient, action: str, run_ids: list[int], **form: str) -> Any:
    data = {"action": action, "run": [str(i) for i in run_ids], "csrf_token": page_csrf(client), **form}
    return client.post("/runs/bulk", data=data, follow_redirects=False)


def listed(client: TestClient, query: str = "") -> set[int]:
    html = client.get(f"/runs{query}").text
    return {int(v) for v in re.findall(r'name="run" value="(\d+)" class="pick"', html)}


def test_archive_from_the_page_hides_and_shows_again(site: TeamSite) -> None:
    editor = site.client("editor@example.org")
    assert site.team_run in listed(editor)
    answer = act(editor, "archive", [site.team_run], back="project=team&sort=-id")
    assert answer.status_code == 303
    assert answer.headers["location"] == "/runs?project=team&sort=-id&done=archive&n=1"
    page = editor.get(answer.headers["location"])
    assert "1 run archived." in page.text and site.team_run not in listed(editor)
    assert site.team_run in listed(editor, "?lifecycle=all")
    assert "archived</span>" in editor.get("/runs?lifecycle=all").text
    assert 'id="lifecycle-note"' in editor.get(f"/runs/{site.team_run}").text
    act(editor, "unarchive", [site.team_run])
    assert site.team_run in listed(editor)


def test_a_forged_done_link_shows_no_count_a_bulk_action_cannot_give(site: TeamSite) -> None:
    editor = site.client("editor@example.org")
    assert "3 runs deleted permanently." in editor.get("/runs?done=purge&n=3").text
    for n in (-1, 1001, 10**9):
        assert "deleted permanently" not in editor.get(f"/runs?done=purge&n={n}").text, n


def test_the_page_offers_only_the_bulk_actions_the_callers_role_allows(site: TeamSite) -> None:
    viewer, editor, owner = (site.client(f"{who}@example.org") for who in ("viewer", "editor", "owner"))
    assert 'id="bulk-actions"' not in viewer.get("/runs").text  # a viewer anywhere: reading only
    assert 'id="bulk-archive"' in editor.get("/runs").text
    trash = editor.get("/runs?lifecycle=trash").text
    assert 'id="bulk-restore"' in trash and 'id="bulk-purge"' not in trash  # purge: owners only
    assert 'id="bulk-purge"' in owner.get("/runs?lifecycle=trash").text


def test_a_thousand_ticked_runs_go_as_one_field(site: TeamSite) -> None:
    """The page's script sends ``runs=1,2,…``: 1,000 runs are not 1,000 form fields (Starlette
    refuses a form of more than 1,000 fields with a bare 400)."""
    editor = site.client("editor@example.org")
    ids = [site.team_run, *range(10_001, 10_000 + bulk_limit())]
    form = {"action": "archive", "runs": ",".join(map(str, ids)), "csrf_token": page_csrf(editor)}
    refused = editor.post("/runs/bulk", data=form, follow_redirects=False)
    assert refused.status_code == 404 and "runs 10001, 10002" in refused.text  # read: all 1,000 ids
    bad = editor.post("/runs/bulk", data=form | {"runs": f"{site.team_run},x"}, follow_redirects=False)
    assert bad.status_code == 422 and "runs: Input should be a valid integer (run ids)" in bad.text
    for loose in (f"{site.team_run}.0", f"+{site.team_run}", f" {site.team_run}", "1_0"):  # lax ints
        for field in ("runs", "run"):
            sent = {k: v for k, v in form.items() if k != "runs"} | {field: loose}
            answer = editor.post("/runs/bulk", data=sent, follow_redirects=False)
            assert answer.status_code == 422 and "(run ids)" in answer.text, (field, loose)
    done = editor.post("/runs/bulk", data=form | {"runs": str(site.team_run)}, follow_redirects=False)
    assert done.status_code == 303 and site.team_run not in listed(editor)


def bulk_limit() -> int:
    from app.runs.bulk import MAX_BULK_RUNS

    return MAX_BULK_RUNS


def test_page_refusals_show_the_reason_and_change_nothing(site: TeamSite) -> None:
    viewer = site.client("viewer@example.org")
    refused = act(viewer, "archive", [site.team_run])
    assert refused.status_code == 403 and "editor role" in refused.text
    editor = site.client("editor@example.org")
    hidden = act(editor, "delete", [site.team_run, site.other_run])
    assert hidden.status_code == 404
    assert f"run {site.other_run} does not exist" in hidden.text
    empty = act(editor, "archive", [])
    assert empty.status_code == 422 and "select runs first" in empty.text
    forged = editor.post("/runs/bulk", data={"action": "delete", "run": [str(site.team_run)]})
    assert forged.status_code == 403
    assert site.team_run in listed(editor)
    assert act(editor, "purge", [site.team_run]).status_code == 403


def save_report(client: TestClient, site: TeamSite, mode: str) -> int:
    compare = client.get(f"/compare?runs={site.team_run}&stat=mean_sv")
    query = re.search(r'name="query" value="([^"]+)"', compare.text)
    assert query
    form = {
        "project": "team",
        "title": f"{mode} study",
        "notes": "",
        "mode": mode,
        "query": query.group(1).replace("&amp;", "&"),
        "csrf_token": page_csrf(client),
    }
    response = client.post("/reports", data=form, follow_redirects=False)
    assert response.status_code == 303, response.text
    return int(response.headers["location"].rsplit("/", 1)[1])


def test_report_naming_a_deleted_run_stays_readable_and_says_so(site: TeamSite) -> None:
    owner = site.client("owner@example.org")
    pinned, live = save_report(owner, site, "pinned"), save_report(owner, site, "live")
    assert act(owner, "delete", [site.team_run]).status_code == 303
    page = owner.get(f"/reports/{pinned}")
    assert page.status_code == 200 and f"run #{site.team_run} was deleted on" in page.text
    assert f'id="hist-{site.team_run}"' in page.text  # the pinned data is still drawn
    live_page = owner.get(f"/reports/{live}")
    assert live_page.status_code == 200 and "this report no longer shows it" in live_page.text
    assert act(owner, "purge", [site.team_run]).status_code == 303
    page = owner.get(f"/reports/{pinned}")
    assert page.status_code == 200 and f"run #{site.team_run} was deleted permanently" in page.text
    assert f'id="hist-{site.team_run}"' in page.text
    live_page = owner.get(f"/reports/{live}")  # the live view no longer finds it, and says why
    assert live_page.status_code == 200 and "This report has no runs" in live_page.text
    assert f"run #{site.team_run} was deleted permanently; this report no longer shows it" in live_page.text
    for report_id in (pinned, live):
        assert owner.get(f"/reports/{report_id}/export.html").status_code == 200
    assert owner.get(f"/runs/{site.team_run}").status_code == 404


def test_a_live_report_names_only_its_projects_runs_so_a_missing_one_was_purged(site: TeamSite) -> None:
    """Saved from a view that also names another project's run (and in the form the page sends, its
    address): the report keeps only its project's runs, and claims nothing about the other one."""
    owner = site.client("owner@example.org")
    query = f"/compare?runs={site.team_run}%2C{site.other_run}&stat=mean_sv"
    made = owner.post(
        "/api/v1/reports",
        json={"project": "team", "title": "mixed", "pinned": False, "query": query},
        headers={"X-CSRF-Token": page_csrf(owner)},
    )
    assert made.status_code == 201, made.text
    with site.db.session(write=False) as session:
        saved = session.get(Report, made.json()["id"])
        assert saved is not None
        assert f"runs={site.team_run}&" in saved.query + "&" and str(site.other_run) not in saved.query
    page = owner.get(f"/reports/{made.json()['id']}").text
    assert f"run #{site.other_run}" not in page and "deleted" not in page


def test_compare_says_which_named_runs_it_leaves_out_for_the_trash(site: TeamSite) -> None:
    editor = site.client("editor@example.org")
    assert act(editor, "delete", [site.team_run]).status_code == 303
    page = editor.get(f"/compare?runs={site.team_run}")
    assert f"run #{site.team_run} in the trash: not shown (restore to compare)" in page.text
    outsider = site.client("outsider@example.org")  # not theirs: not a word about it
    assert f"#{site.team_run}" not in outsider.get(f"/compare?runs={site.team_run},{site.other_run}").text


def test_purge_from_the_page_removes_the_checkpoints(site: TeamSite) -> None:
    from app.runs.artifacts import CheckpointStore

    store = CheckpointStore.from_settings(site.settings)
    store.write_bytes(site.team_run, 1, 1, b"weights")
    owner = site.client("owner@example.org")
    act(owner, "delete", [site.team_run])
    assert store.latest(site.team_run) is not None  # the trash keeps them
    assert act(owner, "purge", [site.team_run]).status_code == 303
    assert store.latest(site.team_run) is None


def test_reloading_the_address_a_refused_bulk_action_left_shows_the_runs(site: TeamSite) -> None:
    reloaded = site.client("editor@example.org").get(
        "/runs/bulk", headers={"accept": "text/html"}, follow_redirects=False
    )
    assert reloaded.status_code == 303 and reloaded.headers["location"] == "/runs"
