"""A team for the permission tests: one project ("team") with an owner, an editor and a viewer, an
outsider who owns another project ("other"), an admin, and worker tokens (imported as ``teamkit``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fastapi.testclient import TestClient

from app.auth.api_tokens import create_token, ensure_admin
from app.auth.models import TokenProject
from app.auth.sessions import hash_password
from app.db import Database
from app.models import ProjectMember, User, utcnow
from app.runs.submit import ensure_project

PASSWORD = "correct horse battery"
MEMBERS = ("owner", "editor", "viewer")


@dataclass
class Team:
    client: TestClient
    db: Database
    tokens: dict[str, str] = field(default_factory=dict)  # caller name -> bearer token
    user_ids: dict[str, int] = field(default_factory=dict)
    project_ids: dict[str, int] = field(default_factory=dict)

    def headers(self, caller: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[caller]}"}

    def call(self, caller: str, method: str, path: str, **kwargs: Any) -> Any:
        return self.client.request(method, path, headers=self.headers(caller), **kwargs)

    def job(self, project: str = "team") -> int:
        """A queued job, submitted by the admin."""
        response = self.call("admin", "POST", "/api/v1/jobs", json={"project": project})
        assert response.status_code == 201, response.text
        return int(response.json()[0]["id"])

    def running_job(self, project: str = "team") -> int:
        """A job claimed (attempt 1) by the admin's unscoped worker token."""
        run_id = self.job(project)
        response = self.call("worker_admin", "POST", f"/api/v1/runs/{run_id}/claim", json={})
        assert response.status_code == 200, response.text
        return run_id


def build_team(client: TestClient, db: Database, admin_email: str) -> Team:
    """Users (with passwords), memberships and tokens, written straight to the database."""
    team = Team(client, db)
    with db.transaction() as session:
        admin = ensure_admin(session=session, email=admin_email)
        admin.password_hash = hash_password(PASSWORD)
        users = {"admin": admin}
        for name in (*MEMBERS, "outsider", "spare"):
            user = User(
                email=f"{name}@example.org", password_hash=hash_password(PASSWORD), created_at=utcnow()
            )
            session.add(user)
            users[name] = user
        session.flush()
        project = ensure_project(session=session, name="team", owner_id=users["owner"].id)
        other = ensure_project(session=session, name="other", owner_id=users["outsider"].id)
        for role in ("editor", "viewer"):
            session.add(
                ProjectMember(project_id=project.id, user_id=users[role].id, role=role, created_at=utcnow())
            )
        for name, user in users.items():
            team.user_ids[name] = user.id
            if name != "spare":  # "spare" has no token: the member-management routes act on it
                team.tokens[name] = create_token(session=session, user=user, name=name).token
        team.tokens["worker_admin"] = create_token(session=session, user=admin, name="w", kind="worker").token
        for name, target in (("worker_team", project), ("worker_other", other)):
            owner = users["owner"] if target is project else users["outsider"]
            new = create_token(session=session, user=owner, name=name, kind="worker")
            session.add(TokenProject(token_id=new.record.id, project_id=target.id))
            team.tokens[name] = new.token
        team.project_ids = {"team": project.id, "other": other.id}
    return team
