"""Accounts (app/accounts.py, `collapsewatch user create`), personal tokens over the API, and the
services behind reports and share links, on SQLite and PostgreSQL."""

from __future__ import annotations

import io
from datetime import timedelta
from pathlib import Path

import pytest
from apikit import Api
from sqlalchemy import select

from app.auth import accounts, invitations
from app.auth.api_tokens import ensure_admin
from app.auth.models import LoginFailure
from app.auth.roles import Actor, Forbidden
from app.auth.sessions import hash_password, verify_password
from app.compare import reports
from app.db import Database
from app.errors import Conflict, InvalidInput, NotFound
from app.models import ProjectMember, User, utcnow
from app.runs import submit
from app.settings import Settings
from collapsewatch.contract import JobSubmit


def _cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *args: str, stdin: str = "") -> int:
    from app.settings import get_settings
    from collapsewatch.cli import main

    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'cw.db'}")
    monkeypatch.setenv("ARTIFACT_DIR", str(tmp_path / "artifacts"))
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    get_settings.cache_clear()
    try:
        return main(list(args))
    finally:
        get_settings.cache_clear()


def test_user_create_command_stores_an_argon2id_hash(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code = _cli(
        tmp_path,
        monkeypatch,
        "user",
        "create",
        "Boss@Example.org",
        "--admin",
        "--password-stdin",
        stdin="a long passphrase\n",
    )
    assert code == 0
    out = capsys.readouterr()
    assert out.out.strip().isdigit() and "created admin boss@example.org" in out.err
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'cw.db'}", _env_file=None)  # type: ignore[call-arg]
    database = Database(settings)
    with database.session(write=False) as session:
        user = session.scalars(select(User)).one()
    database.dispose()
    assert user.is_admin and user.password_hash and user.password_hash.startswith("$argon2id$")
    assert verify_password(user.password_hash, "a long passphrase")


def test_user_create_command_refuses_a_duplicate_and_a_short_password(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        _cli(tmp_path, monkeypatch, "user", "create", "a@b.org", "--password-stdin", stdin="long enough!\n")
        == 0
    )
    assert (
        _cli(tmp_path, monkeypatch, "user", "create", "A@b.org", "--password-stdin", stdin="long enough!\n")
        == 2
    )
    assert "already exists" in capsys.readouterr().err
    assert _cli(tmp_path, monkeypatch, "user", "create", "c@b.org", "--password-stdin", stdin="short\n") == 2
    assert "10 to 1024 characters" in capsys.readouterr().err
    assert (
        _cli(tmp_path, monkeypatch, "user", "create", "not-an-email", "--password-stdin", stdin="x" * 12) == 2
    )
    assert "not an email address" in capsys.readouterr().err


def test_login_limiter_counts_failures_in_the_database_per_account(database: Database) -> None:
    window = timedelta(minutes=15)

    def blocked(account: str) -> bool:
        with database.session(write=False) as session:  # a new session: as another process would
            return accounts.login_blocked(session=session, account=account, max_failures=2, window=window)

    with database.transaction() as session:
        accounts.record_login_failure(session=session, account="A@x.org")
    assert not blocked("a@x.org")
    with database.transaction() as session:
        accounts.record_login_failure(session=session, account="a@x.org ")
    assert blocked("a@X.org") and not blocked("b@x.org")
    with database.transaction() as session:  # failures older than the window no longer count
        for failure in session.scalars(select(LoginFailure)):
            failure.created_at = utcnow() - timedelta(minutes=16)
    assert not blocked("a@x.org")
    with database.transaction() as session:
        accounts.record_login_failure(session=session, account="a@x.org")
        accounts.record_login_failure(session=session, account="a@x.org")
    assert blocked("a@x.org")
    with database.transaction() as session:
        accounts.clear_login_failures(session=session, account="A@x.org")
    assert not blocked("a@x.org")


def test_invitations_need_an_owner_and_work_once(database: Database) -> None:
    admin_email = "admin@localhost"
    with database.transaction() as session:
        admin = ensure_admin(session=session, email=admin_email)
        owner = accounts.create_user(session=session, email="o@x.org", password="owner password")
        editor = accounts.create_user(session=session, email="e@x.org", password="editor password")
        project = submit.ensure_project(session=session, name="p", owner_id=owner.id)

        def invite(actor: Actor, email: str, project_id: int | None, role: str) -> invitations.NewInvitation:
            return invitations.create_invitation(
                session=session,
                actor=actor,
                email=email,
                project_id=project_id,
                role=role,
                local_admin_email=admin_email,
            )

        invite(Actor(owner.id), "n@x.org", project.id, "viewer")
        with pytest.raises(Forbidden):
            invite(Actor(owner.id), "n@x.org", None, "viewer")
        with pytest.raises(NotFound):  # not a member: the project does not exist for them
            invite(Actor(editor.id), "n@x.org", project.id, "viewer")
        with pytest.raises(InvalidInput):
            invite(Actor(admin.id, True), "n@x.org", None, "god")
        with pytest.raises(InvalidInput, match="local admin"):  # the local admin is never invited
            invite(Actor(owner.id), " Admin@Localhost ", project.id, "owner")
        new = invite(Actor(owner.id), "N2@x.org", project.id, "editor")
        user = invitations.accept_as_new_account(
            session=session, token=new.token, password_hash=hash_password("a good password"),
            local_admin_email=admin_email,
        )  # fmt: skip
        assert user.email == "n2@x.org" and verify_password(user.password_hash, "a good password")
        assert not user.is_admin
        with pytest.raises(NotFound):
            invitations.accept_as_member(
                session=session, token=new.token, user_id=user.id, local_admin_email=admin_email
            )
        with pytest.raises(Conflict):
            accounts.create_user(session=session, email="O@x.org", password=None)


def test_invitation_for_an_existing_account_never_creates_or_changes_it(database: Database) -> None:
    """An email that has an account: the new-account path is refused and the password untouched;
    only that account, signed in, accepts; the membership is the only change."""
    admin_email = "admin@localhost"
    with database.transaction() as session:
        owner = accounts.create_user(session=session, email="o@x.org", password="owner password")
        victim = accounts.create_user(session=session, email="v@x.org", password="victim password")
        other = accounts.create_user(session=session, email="x@x.org", password="other password")
        keyless = accounts.create_user(session=session, email="k@x.org", password=None)
        project = submit.ensure_project(session=session, name="p", owner_id=owner.id)
        tokens = {}
        for user in (victim, keyless):
            tokens[user.id] = invitations.create_invitation(
                session=session, actor=Actor(owner.id), email=user.email.upper(), project_id=project.id,
                role="owner", local_admin_email=admin_email,
            ).token  # fmt: skip
        before = victim.password_hash
        for user in (victim, keyless):
            pending = invitations.open_invitation(
                session=session, token=tokens[user.id], local_admin_email=admin_email
            )
            assert pending.existing_account
            with pytest.raises(Conflict, match="existing account"):
                invitations.accept_as_new_account(
                    session=session, token=tokens[user.id], password_hash=hash_password("attacker password"),
                    local_admin_email=admin_email,
                )  # fmt: skip
            with pytest.raises(Forbidden):  # another signed-in account cannot take it either
                invitations.accept_as_member(
                    session=session, token=tokens[user.id], user_id=other.id, local_admin_email=admin_email
                )
        session.refresh(victim)
        session.refresh(keyless)
        assert victim.password_hash == before and keyless.password_hash is None
        assert not session.get(ProjectMember, (project.id, victim.id))
        invitations.accept_as_member(
            session=session, token=tokens[victim.id], user_id=victim.id, local_admin_email=admin_email
        )
        assert session.get(ProjectMember, (project.id, victim.id)).role == "owner"  # type: ignore[union-attr]
        session.refresh(victim)
        assert victim.password_hash == before


def test_invitation_for_the_local_admin_email_cannot_create_it(database: Database) -> None:
    """An invitation row for the local admin's address (made before this rule, or by hand) can
    neither create that account (even before the admin exists) nor give it a password."""
    with database.transaction() as session:
        owner = accounts.create_user(session=session, email="o@x.org", password="owner password")
        project = submit.ensure_project(session=session, name="p", owner_id=owner.id)
        new = invitations.create_invitation(
            session=session, actor=Actor(owner.id), email="later@x.org", project_id=project.id,
            role="owner", local_admin_email="admin@localhost",
        )  # fmt: skip
        with pytest.raises(Conflict):  # the same row checked against a server whose admin is "later@"
            invitations.accept_as_new_account(
                session=session, token=new.token, password_hash=hash_password("attacker password"),
                local_admin_email="Later@x.org",
            )  # fmt: skip
        assert accounts.find_user(session=session, email="later@x.org") is None


def test_report_services_pin_data_and_resolve_share_links(database: Database) -> None:
    with database.transaction() as session:
        admin = ensure_admin(session=session, email="admin@localhost")
        created, _ = submit.create_jobs(
            session=session, data=JobSubmit(project="p"), owner_id=admin.id, max_attempts=1
        )
        other, _ = submit.create_jobs(
            session=session, data=JobSubmit(project="q"), owner_id=admin.id, max_attempts=1
        )
        actor = Actor(admin.id, is_admin=True)
        report = reports.create_report(
            session=session,
            actor=actor,
            project="p",
            title=" t ",
            notes="# Hi",
            pinned=True,
            query_string=f"runs={created[0].id},{other[0].id}&stat=mean_sv",
        )
        assert report.title == "t" and report.snapshot is not None
        assert [r["id"] for r in report.snapshot["runs"]] == [created[0].id]
        view = reports.view(session=session, report=report)
        assert view.notes_html == "<h1>Hi</h1>" and view.project == "p"
        token = reports.create_share(
            session=session, actor=actor, report=report, expires_at=utcnow() + timedelta(days=1)
        )
        assert reports.resolve_share(session=session, token=token).id == report.id
        with pytest.raises(NotFound):
            reports.resolve_share(session=session, token=token[:-1])
        with pytest.raises(InvalidInput):
            reports.create_share(
                session=session, actor=actor, report=report, expires_at=utcnow() - timedelta(seconds=1)
            )
        link = reports.shares(session=session, report_id=report.id)[0]
        link.expires_at = utcnow() - timedelta(seconds=1)
        with pytest.raises(accounts.Gone):
            reports.resolve_share(session=session, token=token)
        reports.revoke_share(session=session, actor=actor, report=report, link_id=link.id)
        with pytest.raises(NotFound):
            reports.resolve_share(session=session, token=token)
        with pytest.raises(InvalidInput):
            reports.create_report(
                session=session, actor=actor, project="p", title="", notes="", pinned=True, query_string=""
            )


def test_render_notes_keeps_markdown_and_drops_active_content() -> None:
    html = reports.render_notes("*a* <b onclick='x()'>b</b> <iframe src=//evil></iframe> [l](https://e.org)")
    assert "<em>a</em>" in html and "<b>b</b>" in html and 'href="https://e.org"' in html
    assert "onclick" not in html and "iframe" not in html


def test_personal_tokens_over_the_api_shown_once_last_use_and_revoke(api: Api) -> None:
    created = api.client.post("/api/v1/tokens", json={"name": "ci"}, headers=api.user)
    assert created.status_code == 201
    body = created.json()
    secret = {"Authorization": f"Bearer {body['token']}"}
    assert api.client.get("/api/v1/me", headers=secret).json()["email"] == "admin@localhost"
    listed = {t["id"]: t for t in api.client.get("/api/v1/tokens", headers=api.user).json()}
    assert "token" not in listed[body["id"]] and listed[body["id"]]["last_used_at"] is not None
    assert listed[body["id"]]["prefix"] == body["token"][:10]
    assert api.client.delete(f"/api/v1/tokens/{body['id']}", headers=api.user).status_code == 204
    assert api.client.get("/api/v1/me", headers=secret).status_code == 401
    assert api.client.post("/api/v1/tokens", json={"name": ""}, headers=api.user).status_code == 422


def test_share_link_expiry_over_the_api_needs_a_timezone_and_a_future_time(api: Api) -> None:
    run = api.job(project="p")
    body = {"project": "p", "title": "t", "query": f"runs={run['id']}"}
    report = api.client.post("/api/v1/reports", json=body, headers=api.user).json()
    path = f"/api/v1/reports/{report['id']}/shares"
    naive = api.client.post(path, json={"expires_at": "2030-01-01T00:00:00"}, headers=api.user)
    assert naive.status_code == 422 and "expires_at" in naive.json()["message"]
    past = api.client.post(path, json={"expires_at": "2000-01-01T00:00:00Z"}, headers=api.user)
    assert past.status_code == 422 and "future" in past.json()["message"]
    created = api.client.post(
        path, json={"expires_at": "2030-01-01T00:00:00Z", "label": "x"}, headers=api.user
    )
    assert created.status_code == 201 and "/s/" in created.json()["url"]
    listed = api.client.get(path, headers=api.user).json()
    assert [link["label"] for link in listed] == ["x"] and "url" not in listed[0]
