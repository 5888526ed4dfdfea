"""Issue 15, finding 7: a project you cannot see reads exactly as one that does not exist, and a
create with a taken name says only that the name is taken (names stay global). On SQLite and
PostgreSQL, through every read route that names a project (path or ``project`` query), API and
pages, compared byte for byte with the answer for a name that exists nowhere.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from teamkit import PASSWORD, Team, build_team

from app.main import create_app
from app.settings import Settings
from tests.security.seckit import route_objects

HIDDEN, MISSING = "team", "nothere"  # "team" exists; the outsider is not a member


@pytest.fixture
def team(settings: Settings) -> Iterator[Team]:
    app = create_app(settings.model_copy(update={"local_autologin": False}))
    app.state.enqueue = lambda run_id: None
    with TestClient(app) as client:
        yield build_team(client, app.state.db, settings.admin_email)


def _signed_in(team: Team, email: str) -> TestClient:
    client = TestClient(team.client.app)
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/login").text)
    assert csrf
    form = {"email": email, "password": PASSWORD, "csrf_token": csrf.group(1)}
    assert client.post("/login", data=form, follow_redirects=False).status_code == 303
    return client


def _read_urls(team: Team) -> list[str]:
    """Every GET route that names a project: ``{name}`` under /projects, or a ``project`` query."""
    urls = []
    for path, route in route_objects(list(team.client.app.routes)):  # type: ignore[attr-defined]
        if "GET" not in (getattr(route, "methods", None) or ()):
            continue
        if "/projects/{name}" in path:
            urls.append(path.replace("{name}", "{project}"))
        dependant = getattr(route, "dependant", None)
        names = [p.alias for p in dependant.query_params] if dependant is not None else []
        if "project" in names and "{" not in path:
            urls.append(path + "?project={project}")
    return sorted(set(urls))


def test_hidden_project_reads_exactly_like_a_missing_one(team: Team) -> None:
    urls = _read_urls(team)
    assert {
        "/projects/{project}",
        "/api/v1/projects/{project}/members",
        "/api/v1/runs?project={project}",
    } <= set(urls)
    browser = _signed_in(team, "outsider@example.org")
    for url in urls:
        client, headers = (
            (team.client, team.headers("outsider")) if url.startswith("/api/") else (browser, {})
        )
        hidden = client.get(url.format(project=HIDDEN), headers=headers, follow_redirects=False)
        missing = client.get(url.format(project=MISSING), headers=headers, follow_redirects=False)
        assert hidden.status_code == missing.status_code, url
        assert hidden.text.replace(HIDDEN, "NAME") == missing.text.replace(MISSING, "NAME"), url
        if "/projects/" in url:
            assert hidden.status_code == 404, url
        assert dict(hidden.headers).keys() == dict(missing.headers).keys(), url


def test_create_with_a_taken_name_says_only_that_it_is_taken(team: Team) -> None:
    """The outsider cannot see "team": creating it, or runs and jobs in it, answers 409 "taken",
    the same words as for its own project "other" (which it can see)."""
    answers = []
    for name in (HIDDEN, "other"):
        response = team.call("outsider", "POST", "/api/v1/projects", json={"name": name})
        assert response.status_code == 409, response.text
        answers.append(response.json()["message"].replace(repr(name), "'NAME'"))
    assert (
        answers[0]
        == answers[1]
        == "the project name 'NAME' is taken; choose another name (or ask its owner to invite you)"
    )
    for path, body in (("/api/v1/runs", {"project": HIDDEN}), ("/api/v1/jobs", {"project": HIDDEN})):
        response = team.call("outsider", "POST", path, json=body)
        assert response.status_code == 409 and "is taken" in response.json()["message"], response.text
        assert "exist" not in response.json()["message"]
    browser = _signed_in(team, "outsider@example.org")
    csrf = re.search(r'name="csrf-token" content="([^"]+)"', browser.get("/projects").text)
    assert csrf
    page = browser.post("/projects", data={"name": HIDDEN, "csrf_token": csrf.group(1)})
    assert page.status_code == 409 and "is taken" in page.text and "already exists" not in page.text
    assert (
        team.call("viewer", "POST", "/api/v1/runs", json={"project": HIDDEN}).status_code == 403
    )  # a member
