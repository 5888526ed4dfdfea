"""Membership changes of one project run one at a time: two owners leaving (or removing each other)
at once leave one owner, never none, and a role change racing a leave answers 404, not a 500."""

from __future__ import annotations

import threading
from collections.abc import Callable
from functools import partial
from typing import Any

import pytest
from sqlalchemy import func, select

from app.auth import projects
from app.auth.accounts import create_user
from app.auth.roles import Actor
from app.db import Database
from app.errors import DomainError
from app.models import Project, ProjectMember, utcnow

ROUNDS = 8


def _project_with_owners(database: Database, name: str, emails: list[str]) -> tuple[int, list[int]]:
    with database.transaction() as session:
        users = [create_user(session=session, email=email, password=None) for email in emails]
        project = Project(name=name, created_at=utcnow())
        session.add(project)
        session.flush()
        for user in users:
            session.add(
                ProjectMember(project_id=project.id, user_id=user.id, role="owner", created_at=utcnow())
            )
        return project.id, [u.id for u in users]


def _at_once(database: Database, calls: list[Callable[[Any], None]]) -> list[str]:
    """Run each call in its own thread and transaction, released together; "ok" or the refusal's kind."""
    barrier = threading.Barrier(len(calls))
    results: list[str] = [""] * len(calls)

    def run(i: int) -> None:
        try:
            with database.transaction() as session:
                barrier.wait(10)
                calls[i](session)
            results[i] = "ok"
        except DomainError as exc:
            results[i] = type(exc).__name__
        except Exception as exc:  # a 500 in the route: reported, not raised here
            results[i] = f"error: {exc!r}"

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return results


def _owners(database: Database, project_id: int) -> int:
    with database.session(write=False) as session:
        stmt = select(func.count()).where(
            ProjectMember.project_id == project_id, ProjectMember.role == "owner"
        )
        return int(session.scalar(stmt) or 0)


REFUSED = ("Conflict", "NotFound", "Forbidden")


def _change(how: str, project_id: int, me: int, other: int, other_email: str) -> Callable[[Any], None]:
    actor = Actor(me)
    if how == "leave":
        return partial(_remove, actor=actor, project_id=project_id, user_id=me)
    if how == "remove each other":
        return partial(_remove, actor=actor, project_id=project_id, user_id=other)
    return partial(_set, actor=actor, project_id=project_id, email=other_email, role="viewer")


def _remove(session: Any, **kwargs: Any) -> None:
    projects.remove_member(session=session, **kwargs)


def _set(session: Any, **kwargs: Any) -> None:
    projects.set_member(session=session, **kwargs)


@pytest.mark.parametrize("how", ["leave", "remove each other", "demote each other"])
def test_two_owners_at_once_leave_one_owner(database: Database, how: str) -> None:
    for i in range(ROUNDS):
        project_id, (a, b) = _project_with_owners(database, f"p{i}", [f"a{i}@x.org", f"b{i}@x.org"])
        calls = [_change(how, project_id, a, b, f"b{i}@x.org"), _change(how, project_id, b, a, f"a{i}@x.org")]
        results = _at_once(database, calls)
        assert results.count("ok") == 1 and next(r for r in results if r != "ok") in REFUSED, results
        assert _owners(database, project_id) == 1


def test_a_role_change_racing_a_leave_is_refused_not_an_error(database: Database) -> None:
    for i in range(ROUNDS):
        project_id, (owner, member) = _project_with_owners(database, f"q{i}", [f"o{i}@x.org", f"m{i}@x.org"])
        with database.transaction() as session:
            session.get(ProjectMember, (project_id, member)).role = "viewer"  # type: ignore[union-attr]
        leave = partial(_remove, actor=Actor(member), project_id=project_id, user_id=member)
        promote = partial(_set, actor=Actor(owner), project_id=project_id, email=f"m{i}@x.org", role="editor")
        results = _at_once(database, [leave, promote])
        assert results[0] == "ok" and results[1] in ("ok", "Conflict"), (
            results
        )  # promoted then left, or after
        with database.session(write=False) as session:
            assert session.get(ProjectMember, (project_id, member)) is None  # nobody re-added
