"""The "Reproduce the paper" batch on a team server (review-attack findings): the batch is the runs the
server queued in project "demo", not whatever else carries its tag; and one account clicking the
button first must not lock every other account out of it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from dashboard_fakes import fake_stats
from sqlalchemy import select, update
from teamsite import TeamSite, page_csrf, team_site

from app.auth.models import Report
from app.models import Project, ProjectMember, Run, User, utcnow
from app.runs import lifecycle
from app.series import epochs
from collapsewatch.contract import EpochIn, FinishIn


@pytest.fixture
def site(tmp_path: Path) -> Iterator[TeamSite]:
    with team_site(tmp_path) as built:
        built.seed.claim(built.other_run)
        built.seed.epoch(built.other_run, 0, rho=0.6)
        with built.db.transaction() as session:
            session.execute(update(Run).where(Run.id == built.other_run).values(status="succeeded"))
        yield built


def _finish_batch(site: TeamSite, batch: str) -> None:
    with site.db.transaction() as session:
        stmt = select(Run.id).where(Run.project.has(Project.name == "demo")).order_by(Run.id)
        ids = [i for i in session.scalars(stmt)]
    for run_id in ids:
        site.seed.claim(run_id)
        with site.db.transaction() as session:
            stats = fake_stats(2, rho=0.5)
            layers = {"fc1": fake_stats(2, rho=0.5), "projector": fake_stats(2, rho=0.5)}
            data = EpochIn.model_validate(
                {"attempt": 1, "metrics": {"recall_at_1": 0.7}, "stats": stats, "layers": layers}
            )
            epochs.put_epoch(session=session, run_id=run_id, epoch=1, data=data)
            lifecycle.finish(session=session, run_id=run_id, data=FinishIn(attempt=1, status="succeeded"))


def test_runs_of_another_project_tagged_with_the_batch_are_not_part_of_it(site: TeamSite) -> None:
    victim = site.client("editor@example.org")
    posted = victim.post(
        "/demo", data={"csrf_token": page_csrf(victim), "quick": "1"}, follow_redirects=False
    )
    assert posted.status_code == 303
    batch = posted.headers["location"].split("demo=")[1]
    total = victim.get(f"/demo/{batch}").json()["total"]
    with site.db.transaction() as session:  # the victim also works in the outsider's project
        other = session.scalars(select(Project).where(Project.name == "other")).one()
        editor = session.scalars(select(User).where(User.email == "editor@example.org")).one()
        session.add(ProjectMember(project_id=other.id, user_id=editor.id, role="editor", created_at=utcnow()))
    # the outsider, who learnt the batch id (a shared link), tags her own older run with it
    outsider = site.client("outsider@example.org")
    tags = f"demo,demo:{batch},claim-a"
    tagged = outsider.post(
        "/runs/bulk",
        data={"action": "tag", "run": [str(site.other_run)], "tags": tags, "csrf_token": page_csrf(outsider)},
        follow_redirects=False,
    )
    assert tagged.status_code == 303
    assert victim.get(f"/demo/{batch}").json()["total"] == total  # only the runs queued in "demo"
    _finish_batch(site, batch)
    written = victim.post(
        f"/demo/{batch}/reports",
        data={"csrf_token": page_csrf(victim)},
        headers={"Accept": "application/json"},
    )
    assert written.status_code == 200, written.text
    with site.db.session(write=False) as session:
        projects = set(session.scalars(select(Project.name).join(Report, Report.project_id == Project.id)))
    assert projects == {"demo"}, f"the demo's reports were written into {projects}"


def test_a_second_account_can_reproduce_the_paper_too(site: TeamSite) -> None:
    first = site.client("viewer@example.org")
    assert first.post("/demo", data={"csrf_token": page_csrf(first), "quick": "1"}).status_code == 200
    second = site.client("outsider@example.org")
    again = second.post("/demo", data={"csrf_token": page_csrf(second), "quick": "1"}, follow_redirects=False)
    assert again.status_code == 303, f"{again.status_code}: {again.text}"


def test_a_second_accounts_demo_goes_to_its_own_project_and_is_followed_there(site: TeamSite) -> None:
    first = site.client("viewer@example.org")
    assert first.post("/demo", data={"csrf_token": page_csrf(first), "quick": "1"}).status_code == 200
    second = site.client("outsider@example.org")
    posted = second.post(
        "/demo", data={"csrf_token": page_csrf(second), "quick": "1"}, follow_redirects=False
    )
    batch = posted.headers["location"].split("demo=")[1]
    found = second.get(f"/demo/{batch}").json()
    assert found["project"].startswith("demo-") and found["total"] > 0, found
    assert first.get(f"/demo/{batch}").status_code == 404  # the first account cannot read it
    page = second.get(f"/runs?demo={batch}").text
    assert f'data-batch="{batch}"' in page and found["project"] in page
