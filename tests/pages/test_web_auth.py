"""Browser sessions, CSRF, login and local mode (app/web_auth.py, app/web.py, app/pages/auth.py)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta
from typing import TYPE_CHECKING

import pytest
from fastapi.testclient import TestClient

from app.auth.sessions import (
    SESSION_COOKIE,
    LoginLimiter,
    create_session,
    csrf_token,
    csrf_valid,
    hash_password,
    resolve_session,
)
from app.main import create_app
from app.settings import Settings

if TYPE_CHECKING:
    from pagekit import Pages


@pytest.fixture
def team_client(page_settings: Settings) -> Iterator[TestClient]:
    """The app with local mode off and one user with a password."""
    settings = page_settings.model_copy(update={"local_autologin": False})
    app = create_app(settings)
    with TestClient(app) as client:
        from app.models import User

        with app.state.db.transaction() as session:
            session.add(User(email="ana@example.org", password_hash=hash_password("correct horse")))
        yield client


def _login_csrf(client: TestClient) -> str:
    html = client.get("/login").text
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match
    return match.group(1)


def test_pages_redirect_to_login_without_a_session_when_local_mode_is_off(team_client: TestClient) -> None:
    response = team_client.get("/runs?status=queued", follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/login?next=/runs%3Fstatus%3Dqueued"


def test_login_with_password_sets_a_session_and_wrong_password_does_not(team_client: TestClient) -> None:
    csrf = _login_csrf(team_client)
    bad = team_client.post(
        "/login", data={"email": "ana@example.org", "password": "nope", "csrf_token": csrf}
    )
    assert bad.status_code == 401 and "Wrong email or password" in bad.text
    assert SESSION_COOKIE not in team_client.cookies
    csrf = _login_csrf(team_client)
    form = {"email": "ana@example.org", "password": "correct horse", "csrf_token": csrf, "next": "/jobs/new"}
    good = team_client.post("/login", data=form, follow_redirects=False)
    assert good.status_code == 303 and good.headers["location"] == "/jobs/new"
    assert team_client.get("/runs").status_code == 200
    assert "ana@example.org" in team_client.get("/runs").text


def test_login_refuses_a_foreign_redirect_and_a_missing_csrf(team_client: TestClient) -> None:
    no_csrf = team_client.post("/login", data={"email": "ana@example.org", "password": "correct horse"})
    assert no_csrf.status_code == 403 and SESSION_COOKIE not in team_client.cookies
    csrf = _login_csrf(team_client)
    form = {
        "email": "ana@example.org",
        "password": "correct horse",
        "csrf_token": csrf,
        "next": "//evil.example",
    }
    response = team_client.post("/login", data=form, follow_redirects=False)
    assert response.headers["location"] == "/runs"


def test_login_is_rate_limited_per_account(team_client: TestClient) -> None:
    for _ in range(5):
        csrf = _login_csrf(team_client)
        team_client.post("/login", data={"email": "ana@example.org", "password": "x", "csrf_token": csrf})
    csrf = _login_csrf(team_client)
    form = {"email": "ana@example.org", "password": "correct horse", "csrf_token": csrf}
    assert team_client.post("/login", data=form).status_code == 429


def test_login_limiter_forgets_failures_after_the_window() -> None:
    limiter = LoginLimiter(max_failures=2, window_s=0.0)
    limiter.record_failure("a@b")
    limiter.record_failure("a@b")
    assert not limiter.blocked("a@b")
    strict = LoginLimiter(max_failures=1, window_s=60.0)
    strict.record_failure("A@b")
    assert strict.blocked("a@B") and not strict.blocked("c@d")


def test_local_mode_signs_a_new_browser_in_as_the_local_admin(pages: Pages) -> None:
    response = pages.client.get("/runs")
    assert response.status_code == 200 and "admin@localhost" in response.text
    assert SESSION_COOKIE in pages.client.cookies
    first = pages.client.cookies[SESSION_COOKIE]
    pages.client.get("/runs")
    assert pages.client.cookies[SESSION_COOKIE] == first  # the session is reused, not re-created


def test_cookie_session_reads_the_api_but_writes_need_the_csrf_header(pages: Pages) -> None:
    run_id = pages.seed.jobs()[0]
    csrf = pages.csrf()
    assert pages.client.get(f"/api/v1/runs/{run_id}").status_code == 200
    refused = pages.client.post(f"/api/v1/runs/{run_id}/cancel")
    assert refused.status_code == 403 and "X-CSRF-Token" in refused.text
    allowed = pages.client.post(f"/api/v1/runs/{run_id}/cancel", headers={"X-CSRF-Token": csrf})
    assert allowed.status_code == 200, allowed.text


def test_sessions_are_stored_hashed_and_expire(pages: Pages) -> None:
    from app.auth.sessions import WebSession

    with pages.db.transaction() as session:
        live = create_session(session=session, user_id=pages.seed.admin_id)
        old = create_session(session=session, user_id=pages.seed.admin_id, ttl=timedelta(seconds=-1))
        stored = {row.token_hash for row in session.query(WebSession)}
    assert live not in stored and old not in stored
    with pages.db.session(write=False) as session:
        user = resolve_session(session=session, token=live)
        assert user is not None and user.id == pages.seed.admin_id
        assert resolve_session(session=session, token=old) is None
        assert resolve_session(session=session, token="unknown") is None


def test_csrf_token_is_bound_to_the_session() -> None:
    token = csrf_token("secret", "session-a")
    assert csrf_valid("secret", "session-a", token)
    assert not csrf_valid("secret", "session-b", token)
    assert not csrf_valid("other-secret", "session-a", token)
    assert not csrf_valid("secret", "session-a", None)


def test_pages_show_members_only_their_projects_and_viewers_cannot_cancel(
    page_settings: Settings,
) -> None:
    from app.models import ProjectMember, User
    from app.runs import submit
    from collapsewatch.contract import JobSubmit

    settings = page_settings.model_copy(update={"local_autologin": False})
    app = create_app(settings)
    with TestClient(app) as client:
        with app.state.db.transaction() as session:
            viewer = User(email="vic@example.org", password_hash=hash_password("pw"))
            session.add(viewer)
            session.flush()
            mine, _ = submit.create_jobs(
                session=session, data=JobSubmit(project="shared"), owner_id=None, max_attempts=3
            )
            other, _ = submit.create_jobs(
                session=session, data=JobSubmit(project="secret"), owner_id=None, max_attempts=3
            )
            session.add(ProjectMember(project_id=mine[0].project_id, user_id=viewer.id, role="viewer"))
            token = create_session(session=session, user_id=viewer.id)
            shared_id, secret_id = mine[0].id, other[0].id
        client.cookies.set(SESSION_COOKIE, token)
        listing = client.get("/runs").text
        assert f'data-run-id="{shared_id}"' in listing and f'data-run-id="{secret_id}"' not in listing
        assert ">secret<" not in listing  # not even in the project filter
        assert client.get(f"/runs/{secret_id}").status_code == 404
        compare = client.get(f"/compare?runs={shared_id},{secret_id}").text
        assert f'href="/runs/{shared_id}"' in compare and f'href="/runs/{secret_id}"' not in compare
        csrf = csrf_token("page-secret", token)
        assert client.post(f"/runs/{shared_id}/cancel", data={"csrf_token": csrf}).status_code == 403
        form = {"csrf_token": csrf, "project": "shared"}
        refused = client.post("/jobs/new", data=form)
        assert refused.status_code == 403 and 'data-error-for="project"' in refused.text
