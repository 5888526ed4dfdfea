"""Team mode in the browser pages: roles on pages (404 for outsiders), CSRF on the new forms, the
database login throttle, personal tokens, password change, invitations (app/pages/account.py,
app/pages/projects.py, app/accounts.py)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update
from teamsite import PASSWORD, TeamSite, login, page_csrf, team_site

from app.auth.models import Invitation
from app.auth.sessions import SESSION_COOKIE
from app.main import create_app
from app.models import utcnow


@pytest.fixture
def site(tmp_path: Path) -> Iterator[TeamSite]:
    with team_site(tmp_path) as built:
        yield built


def test_outsider_gets_404_not_403_for_another_projects_pages(site: TeamSite) -> None:
    outsider = site.client("outsider@example.org")
    for path in (
        f"/runs/{site.team_run}",
        f"/runs/{site.team_run}/alerts",
        "/projects/team",
        f"/jobs/new?clone={site.team_run}",
    ):
        assert outsider.get(path).status_code == 404, path
    csrf = page_csrf(outsider)
    assert outsider.post(f"/runs/{site.team_run}/cancel", data={"csrf_token": csrf}).status_code == 404
    listing = outsider.get("/runs").text
    assert f'href="/runs/{site.other_run}"' in listing and f'href="/runs/{site.team_run}"' not in listing
    compare = outsider.get(f"/compare?runs={site.team_run},{site.other_run}").text
    assert f"#{site.other_run}" in compare and f"#{site.team_run}<" not in compare


def test_viewer_reads_but_cannot_cancel_and_editor_can(site: TeamSite) -> None:
    viewer = site.client("viewer@example.org")
    assert viewer.get(f"/runs/{site.team_run}").status_code == 200
    refused = viewer.post(f"/runs/{site.team_run}/cancel", data={"csrf_token": page_csrf(viewer)})
    assert refused.status_code == 403 and "editor" in refused.json()["message"]
    editor = site.client("editor@example.org")
    done = editor.post(
        f"/runs/{site.team_run}/cancel", data={"csrf_token": page_csrf(editor)}, follow_redirects=False
    )
    assert done.status_code == 303


FORM_POSTS = [
    ("/account/tokens", {"name": "laptop"}),
    ("/account/password", {"current_password": PASSWORD, "new_password": "another long one"}),
    ("/projects", {"name": "fresh"}),
    ("/projects/team/members", {"email": "viewer@example.org", "role": "editor"}),
    ("/projects/team/invitations", {"email": "new@example.org", "role": "viewer"}),
    ("/projects/team/worker-tokens", {"token_name": "w"}),
    ("/reports", {"project": "team", "title": "t", "query": "runs=1"}),
    ("/logout", {}),
]


@pytest.mark.parametrize(("path", "form"), FORM_POSTS, ids=[p for p, _ in FORM_POSTS])
def test_form_post_without_csrf_token_is_refused_with_403(
    site: TeamSite, path: str, form: dict[str, str]
) -> None:
    owner = site.client("owner@example.org")
    assert owner.post(path, data=form, follow_redirects=False).status_code == 403
    wrong = owner.post(path, data=form | {"csrf_token": "forged"}, follow_redirects=False)
    assert wrong.status_code == 403


def test_login_throttle_blocks_the_account_after_5_failures_across_app_instances(site: TeamSite) -> None:
    first = site.client()
    for _ in range(5):
        assert login(first, "editor@example.org", "wrong password").status_code == 401
    blocked = login(first, "editor@example.org", PASSWORD)
    assert blocked.status_code == 429 and "15 minutes" in blocked.text
    other_process = create_app(site.settings)  # a second server on the same database
    with TestClient(other_process) as second:
        assert login(second, "EDITOR@example.org", PASSWORD).status_code == 429
        assert login(second, "viewer@example.org", PASSWORD).status_code == 303


def test_account_page_creates_a_token_shown_once_and_revokes_it(site: TeamSite) -> None:
    editor = site.client("editor@example.org")
    created = editor.post("/account/tokens", data={"name": "laptop", "csrf_token": page_csrf(editor)})
    assert created.status_code == 200 and created.headers["cache-control"] == "no-store"
    token = re.search(r"(cw_[A-Za-z0-9_\-]{40,})", created.text)
    assert token
    api = {"Authorization": f"Bearer {token.group(1)}"}
    assert editor.get(f"/api/v1/runs/{site.team_run}", headers=api).status_code == 200
    again = editor.get("/account").text
    assert token.group(1) not in again and "laptop" in again and "never" not in again.split("laptop")[1][:300]
    token_id = re.search(r'action="/account/tokens/(\d+)/revoke"', again)
    assert token_id
    revoke = editor.post(
        f"/account/tokens/{token_id.group(1)}/revoke", data={"csrf_token": page_csrf(editor)}
    )
    assert revoke.status_code == 200 and "revoked" in revoke.text
    assert editor.get(f"/api/v1/runs/{site.team_run}", headers=api).status_code == 401


def test_password_change_needs_the_current_password(site: TeamSite) -> None:
    viewer = site.client("viewer@example.org")
    wrong = {
        "current_password": "nope",
        "new_password": "a brand new secret",
        "csrf_token": page_csrf(viewer),
    }
    assert viewer.post("/account/password", data=wrong).status_code == 422
    short = wrong | {"current_password": PASSWORD, "new_password": "short"}
    assert viewer.post("/account/password", data=short).status_code == 422
    good = short | {"new_password": "a brand new secret"}
    assert viewer.post("/account/password", data=good).status_code == 200
    assert login(site.client(), "viewer@example.org", PASSWORD).status_code == 401
    assert login(site.client(), "viewer@example.org", "a brand new secret").status_code == 303


def _invite(site: TeamSite, email: str, role: str = "editor") -> str:
    owner = site.client("owner@example.org")
    page = owner.post(
        "/projects/team/invitations", data={"email": email, "role": role, "csrf_token": page_csrf(owner)}
    )
    assert page.status_code == 200
    match = re.search(r"https?://[^\s<]+/invite/([A-Za-z0-9_\-]+)", page.text)
    assert match
    return match.group(1)


def _accept(client: TestClient, token: str, password: str) -> object:
    form = re.search(r'name="csrf_token" value="([^"]+)"', client.get(f"/invite/{token}").text)
    assert form
    return client.post(
        f"/invite/{token}", data={"password": password, "csrf_token": form.group(1)}, follow_redirects=False
    )


def test_invitation_sets_a_password_signs_in_and_grants_the_role(site: TeamSite) -> None:
    token = _invite(site, "newcomer@example.org")
    invitee = site.client()
    assert invitee.post(f"/invite/{token}", data={"password": "long enough pw"}).status_code == 403  # no CSRF
    accepted = _accept(invitee, token, "long enough pw")
    assert accepted.status_code == 303 and SESSION_COOKIE in invitee.cookies
    assert "you are editor" in invitee.get("/projects/team").text
    assert invitee.get("/projects/other").status_code == 404
    assert site.client().get(f"/invite/{token}").status_code == 404  # used once
    assert login(site.client(), "newcomer@example.org", "long enough pw").status_code == 303


def test_expired_invitation_is_refused_with_410(site: TeamSite) -> None:
    token = _invite(site, "late@example.org")
    with site.db.transaction() as session:
        session.execute(update(Invitation).values(expires_at=utcnow() - timedelta(seconds=1)))
    client = site.client()
    response = client.post(f"/invite/{token}", data={"password": "long enough pw", "csrf_token": "x"})
    assert response.status_code == 403
    page = client.get(f"/invite/{token}")
    assert page.status_code == 410 and 'name="password"' not in page.text  # no form once expired
    client.cookies.set("cw_invite_csrf", "tok", path="/invite")
    expired = client.post(f"/invite/{token}", data={"password": "long enough pw", "csrf_token": "tok"})
    assert expired.status_code == 410 and "expired" in expired.text


def test_viewer_cannot_manage_members_and_owner_can(site: TeamSite) -> None:
    viewer = site.client("viewer@example.org")
    form = {"email": "viewer@example.org", "role": "editor", "csrf_token": page_csrf(viewer)}
    assert viewer.post("/projects/team/members", data=form).status_code == 403
    owner = site.client("owner@example.org")
    changed = owner.post(
        "/projects/team/members", data=form | {"csrf_token": page_csrf(owner)}, follow_redirects=False
    )
    assert changed.status_code == 303
    roles = {m["email"]: m["role"] for m in owner.get("/api/v1/projects/team/members").json()}
    assert roles["viewer@example.org"] == "editor"


def test_an_owner_cannot_add_an_account_without_its_consent(site: TeamSite) -> None:
    """Project names are global and the SDK logs to "default" unless told otherwise: an owner who
    could add anyone would receive their runs. The owner invites (the admin may add directly:
    tests/app/auth/test_authz_routes.py's spare member)."""
    owner = site.client("owner@example.org")
    form = {"email": "outsider@example.org", "role": "editor", "csrf_token": page_csrf(owner)}
    refused = owner.post("/projects/team/members", data=form, follow_redirects=False)
    assert refused.status_code == 409 and "invite them" in refused.text
    outsider = site.client("outsider@example.org")
    assert outsider.get(f"/runs/{site.team_run}").status_code == 404
    api = owner.put(
        "/api/v1/projects/team/members",
        json={"email": "outsider@example.org", "role": "editor"},
        headers={"X-CSRF-Token": page_csrf(owner)},
    )
    assert api.status_code == 409 and "nobody joins a project without accepting" in api.json()["message"]
    assert outsider.get(f"/runs/{site.team_run}").status_code == 404
    invited = owner.post(
        "/api/v1/projects/team/invitations",
        json={"email": "outsider@example.org", "role": "editor"},
        headers={"X-CSRF-Token": page_csrf(owner)},
    )
    assert invited.status_code == 201, invited.text  # the way in: the outsider accepts, or not


def test_leaving_from_the_project_page(site: TeamSite) -> None:
    viewer = site.client("viewer@example.org")
    page = viewer.get("/projects/team").text
    assert 'id="leave-form"' in page and ">Remove<" not in page  # a viewer removes nobody else
    left = viewer.post("/projects/team/leave", data={"csrf_token": page_csrf(viewer)}, follow_redirects=False)
    assert left.status_code == 303 and left.headers["location"].endswith("/projects")
    assert viewer.get(f"/runs/{site.team_run}").status_code == 404
    owner = site.client("owner@example.org")
    assert owner.post("/projects/team/leave", data={}, follow_redirects=False).status_code == 403  # no CSRF
    last = owner.post("/projects/team/leave", data={"csrf_token": page_csrf(owner)}, follow_redirects=False)
    assert last.status_code == 409 and "at least one owner" in last.text


def test_a_member_can_leave_a_project_but_its_last_owner_cannot(site: TeamSite) -> None:
    viewer = site.client("viewer@example.org")
    me = viewer.get("/api/v1/me").json()["id"]
    csrf = {"X-CSRF-Token": page_csrf(viewer)}
    others = [m for m in viewer.get("/api/v1/projects/team/members").json() if m["user_id"] != me]
    assert (
        viewer.delete(f"/api/v1/projects/team/members/{others[0]['user_id']}", headers=csrf).status_code
        == 403
    )
    assert viewer.delete(f"/api/v1/projects/team/members/{me}", headers=csrf).status_code == 204
    assert viewer.get(f"/runs/{site.team_run}").status_code == 404
    owner = site.client("owner@example.org")
    owner_id = owner.get("/api/v1/me").json()["id"]
    last = owner.delete(
        f"/api/v1/projects/team/members/{owner_id}", headers={"X-CSRF-Token": page_csrf(owner)}
    )
    assert last.status_code == 409 and "at least one owner" in last.json()["message"]


def test_session_cookie_is_httponly_lax_and_secure_over_https(site: TeamSite) -> None:
    plain = login(site.client(), "viewer@example.org", PASSWORD).headers["set-cookie"].lower()
    assert "httponly" in plain and "samesite=lax" in plain and "secure" not in plain
    https = TestClient(site.app, base_url="https://testserver")  # type: ignore[arg-type]
    cookie = login(https, "viewer@example.org", PASSWORD).headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=lax" in cookie and "; secure" in cookie


def test_login_email_is_case_insensitive(site: TeamSite) -> None:
    assert login(site.client(), "  Viewer@Example.ORG ", PASSWORD).status_code == 303
