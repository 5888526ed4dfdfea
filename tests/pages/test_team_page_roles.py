"""Every page form that writes, for each role (outsider, viewer, editor, owner): allowed or refused
(404 for outsiders, 403 for a role too low), through the real login and CSRF tokens."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
from fastapi.testclient import TestClient
from teamsite import TeamSite, page_csrf, team_site

from app.runs.job_form import default_values

ROLES = ("outsider", "viewer", "editor", "owner")
RANK = {"outsider": 0, "viewer": 1, "editor": 2, "owner": 3}
NEED = {"editor": 2, "owner": 3}


@dataclass
class Site:
    team: TeamSite
    clients: dict[str, TestClient]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    with team_site(tmp_path_factory.mktemp("roles")) as team:
        clients = {role: team.client(f"{role}@example.org") for role in ROLES}
        yield Site(team, clients)


def _report(site: Site) -> int:
    owner = site.clients["owner"]
    form = {
        "project": "team",
        "title": "r",
        "query": f"runs={site.team.team_run}",
        "csrf_token": page_csrf(owner),
    }
    response = owner.post("/reports", data=form, follow_redirects=False)
    assert response.status_code == 303, response.text
    return int(response.headers["location"].rsplit("/", 1)[1])


def _link(site: Site) -> str:
    report_id = _report(site)
    owner = site.clients["owner"]
    page = owner.post(f"/reports/{report_id}/shares", data={"csrf_token": page_csrf(owner)}).text
    link_id = re.search(rf'action="/reports/{report_id}/shares/(\d+)/revoke"', page)
    assert link_id
    return f"/reports/{report_id}/shares/{link_id.group(1)}/revoke"


def _worker_token(site: Site) -> str:
    owner = site.clients["owner"]
    page = owner.post(
        "/projects/team/worker-tokens", data={"token_name": "w", "csrf_token": page_csrf(owner)}
    )
    token_id = re.findall(r'action="/projects/team/worker-tokens/(\d+)/revoke"', page.text)
    assert token_id
    return f"/projects/team/worker-tokens/{max(map(int, token_id))}/revoke"


def _job(site: Site) -> int:
    return site.team.seed.jobs(project="team")[0]


@dataclass(frozen=True)
class Form:
    name: str
    need: str
    allowed: int
    prepare: Callable[[Site], tuple[str, dict[str, str]]]


FORMS = [
    Form("cancel run", "editor", 303, lambda s: (f"/runs/{_job(s)}/cancel", {})),
    Form("re-run", "editor", 303, lambda s: (f"/runs/{_job(s)}/rerun", {})),
    Form("submit job", "editor", 303, lambda s: ("/jobs/new", default_values() | {"project": "team"})),
    Form(
        "save report",
        "editor",
        303,
        lambda s: ("/reports", {"project": "team", "title": "t", "query": f"runs={s.team.team_run}"}),
    ),
    Form("create share link", "editor", 200, lambda s: (f"/reports/{_report(s)}/shares", {"label": "x"})),
    Form("revoke share link", "editor", 303, lambda s: (_link(s), {})),
    Form("delete report", "editor", 303, lambda s: (f"/reports/{_report(s)}/delete", {})),
    Form(
        "set member",
        "owner",
        303,
        lambda s: ("/projects/team/members", {"email": "viewer@example.org", "role": "viewer"}),
    ),
    Form(
        "invite",
        "owner",
        200,
        lambda s: ("/projects/team/invitations", {"email": "n@example.org", "role": "viewer"}),
    ),
    Form(
        "create worker token", "owner", 200, lambda s: ("/projects/team/worker-tokens", {"token_name": "w"})
    ),
    Form("revoke worker token", "owner", 303, lambda s: (_worker_token(s), {})),
]


@pytest.mark.parametrize(
    ("form", "role"), [pytest.param(f, r, id=f"{f.name}-{r}") for f in FORMS for r in ROLES]
)
def test_page_form_allows_or_refuses_each_role(site: Site, form: Form, role: str) -> None:
    path, data = form.prepare(site)
    client = site.clients[role]
    response = client.post(path, data=data | {"csrf_token": page_csrf(client)}, follow_redirects=False)
    assert response.status_code == expected_status(form, role), response.text[:300]


def expected_status(form: Form, role: str) -> int:
    if RANK[role] == 0:  # not a member: the project does not exist for them, and a create that
        return 409 if form.name == "submit job" else 404  # names it hears only "the name is taken"
    return form.allowed if RANK[role] >= NEED[form.need] else 403
