"""Issue 15, finding 1: an invitation never signs anyone in as, or changes, an existing account.

The attacker is "outsider", an ordinary account that owns its own project ("other"). It invites
the local admin's address and another user's address, through the API and through the project
page, and opens the links itself. On SQLite and PostgreSQL, through the real app and login form.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, update
from teamkit import PASSWORD, Team, build_team

from app.auth.models import Invitation
from app.auth.sessions import SESSION_COOKIE, WebSession, verify_password
from app.main import create_app
from app.models import ProjectMember, User, utcnow
from app.settings import Settings

ATTACKER_PASSWORD = "attacker chosen password"


@pytest.fixture
def team(settings: Settings) -> Iterator[Team]:
    app = create_app(settings.model_copy(update={"local_autologin": False}))
    app.state.enqueue = lambda run_id: None
    with TestClient(app) as client:
        yield build_team(client, app.state.db, settings.admin_email)


def browser(team: Team, email: str | None = None, password: str = PASSWORD) -> TestClient:
    client = TestClient(team.client.app)
    if email is not None:
        assert sign_in(client, email, password).status_code == 303
    return client


def sign_in(client: TestClient, email: str, password: str) -> Any:
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/login").text)
    assert csrf
    form = {"email": email, "password": password, "csrf_token": csrf.group(1)}
    return client.post("/login", data=form, follow_redirects=False)


def page_csrf(client: TestClient) -> str:
    found = re.search(r'name="csrf-token" content="([^"]+)"', client.get("/account").text)
    assert found
    return found.group(1)


def invite(team: Team, via: str, email: str, role: str = "owner") -> Any:
    """The outsider (owner of "other") invites ``email``: over the API or with the page's form."""
    if via == "api":
        body = {"email": email, "role": role}
        return team.call("outsider", "POST", "/api/v1/projects/other/invitations", json=body)
    page = browser(team, "outsider@example.org")
    form = {"email": email, "role": role, "csrf_token": page_csrf(page)}
    return page.post("/projects/other/invitations", data=form)


def link_token(team: Team, via: str, email: str) -> str:
    response = invite(team, via, email)
    assert response.status_code in (200, 201), response.text
    text = response.json()["url"] if via == "api" else response.text
    found = re.search(r"/invite/([A-Za-z0-9_\-]{20,})", text)
    assert found
    return found.group(1)


def user_row(team: Team, email: str) -> tuple[str | None, int]:
    """(password hash, number of browser sessions) of the account."""
    with team.db.session(write=False) as session:
        user = session.scalars(select(User).where(User.email == email)).one()
        count = session.scalar(select(func.count()).where(WebSession.user_id == user.id))
        return user.password_hash, int(count or 0)


def accept_with_password(client: TestClient, token: str, password: str) -> Any:
    page = client.get(f"/invite/{token}")
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    form = {"password": password, "csrf_token": csrf.group(1) if csrf else ""}
    if csrf is None:  # no password form (an existing account): forge the post with a matching cookie
        client.cookies.set("cw_invite_csrf", "forged", path="/invite")
        form["csrf_token"] = "forged"
    return client.post(f"/invite/{token}", data=form, follow_redirects=False)


@pytest.mark.parametrize("via", ["api", "page"])
def test_invitation_for_the_admin_email_is_refused_and_leaves_the_admin_unclaimed(
    team: Team, settings: Settings, via: str
) -> None:
    with team.db.transaction() as session:  # the embedded default's admin has no password
        session.execute(update(User).where(User.email == settings.admin_email).values(password_hash=None))
    for address in (settings.admin_email, settings.admin_email.upper()):
        refused = invite(team, via, address)
        assert refused.status_code == 422, refused.text
        assert "local admin" in refused.text
    with team.db.transaction() as session:  # a link made some other way (older server, by hand)
        session.add(
            Invitation(
                token_hash=hashlib.sha256(b"x" * 43).hexdigest(),
                email=settings.admin_email,
                project_id=team.project_ids["other"],
                role="owner",
                invited_by=team.user_ids["outsider"],
                expires_at=utcnow() + timedelta(days=1),
            )
        )
    holder = browser(team)
    page = holder.get("/invite/" + "x" * 43)
    assert page.status_code == 200 and 'name="password"' not in page.text
    claimed = accept_with_password(holder, "x" * 43, ATTACKER_PASSWORD)
    assert claimed.status_code == 409 and SESSION_COOKIE not in holder.cookies
    assert user_row(team, settings.admin_email) == (None, 0)  # no password, no session
    assert sign_in(browser(team), settings.admin_email, ATTACKER_PASSWORD).status_code == 401


@pytest.mark.parametrize("via", ["api", "page"])
def test_invitation_for_another_users_email_needs_that_user_signed_in(team: Team, via: str) -> None:
    token = link_token(team, via, "Viewer@Example.org")
    before = user_row(team, "viewer@example.org")
    holder = browser(team)  # the attacker opens its own link, signed out
    page = holder.get(f"/invite/{token}")
    assert page.status_code == 200 and 'name="password"' not in page.text
    assert "already has an account" in page.text and SESSION_COOKIE not in holder.cookies
    claimed = accept_with_password(holder, token, ATTACKER_PASSWORD)
    assert claimed.status_code == 409 and "existing account" in claimed.text
    assert SESSION_COOKIE not in holder.cookies
    anonymous = holder.post(f"/invite/{token}/accept", data={"csrf_token": "x"}, follow_redirects=False)
    assert anonymous.status_code == 303 and anonymous.headers["location"].startswith("/login?next=")
    attacker = browser(team, "outsider@example.org")  # signed in as itself: not the invitee
    refused = attacker.post(f"/invite/{token}/accept", data={"csrf_token": page_csrf(attacker)})
    assert refused.status_code == 403
    assert user_row(team, "viewer@example.org")[0] == before[0]  # the password is untouched
    assert sign_in(browser(team), "viewer@example.org", ATTACKER_PASSWORD).status_code == 401
    with team.db.session(write=False) as session:
        assert session.get(ProjectMember, (team.project_ids["other"], team.user_ids["viewer"])) is None

    victim = browser(team, "viewer@example.org")  # the invitee, with its own password
    offer = victim.get(f"/invite/{token}")
    assert 'action="/invite/' in offer.text and "/accept" in offer.text
    forged = victim.post(f"/invite/{token}/accept", data={"csrf_token": "forged"})
    assert forged.status_code == 403
    accepted = victim.post(
        f"/invite/{token}/accept", data={"csrf_token": page_csrf(victim)}, follow_redirects=False
    )
    assert accepted.status_code == 303 and accepted.headers["location"] == "/projects/other"
    assert victim.get("/projects/other").status_code == 200
    assert user_row(team, "viewer@example.org")[0] == before[0]
    assert victim.get(f"/invite/{token}").status_code == 404  # used once


def test_invitation_for_a_new_email_creates_a_new_account(team: Team) -> None:
    token = link_token(team, "api", "newcomer@example.org")
    invitee = browser(team)
    created = accept_with_password(invitee, token, "newcomer password")
    assert created.status_code == 303 and SESSION_COOKIE in invitee.cookies
    me = invitee.get("/account")
    assert "newcomer@example.org" in me.text and "admin" not in me.text.split("</h1>")[0]
    password_hash, sessions = user_row(team, "newcomer@example.org")
    assert verify_password(password_hash, "newcomer password") and sessions == 1
    assert invitee.get("/projects/other").status_code == 200


def test_invitation_page_never_signs_in_as_the_local_admin_in_local_mode(settings: Settings) -> None:
    app = create_app(settings.model_copy(update={"local_autologin": True}))
    app.state.enqueue = lambda run_id: None
    with TestClient(app) as client:
        team = build_team(client, app.state.db, settings.admin_email)
        token = link_token(team, "api", "someone@example.org")
        holder = TestClient(app)
        page = holder.get(f"/invite/{token}")
        assert page.status_code == 200 and SESSION_COOKIE not in holder.cookies
        response = holder.post(f"/invite/{token}/accept", data={"csrf_token": ""}, follow_redirects=False)
        assert response.status_code == 303 and SESSION_COOKIE not in holder.cookies
