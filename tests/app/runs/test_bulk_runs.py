"""Bulk run management through the API (POST /api/v1/run-actions and the list's ``lifecycle``):
each action, the role table with attacker accounts, all-or-nothing requests, validation, purge."""

from __future__ import annotations

from typing import Any

import pytest
from apikit import STATS
from sqlalchemy import func, select, update
from teamkit import Team

from app.models import Epoch, Run, RunEvent
from app.runs.artifacts import CheckpointStore
from app.settings import Settings


def finished(team: Team, project: str = "team") -> int:
    """A job that ran one epoch (with a checkpoint) and succeeded."""
    run_id = team.running_job(project)
    body = {"attempt": 1, "metrics": {"val_acc": 0.5}, "stats": STATS}
    assert team.call("worker_admin", "PUT", f"/api/v1/runs/{run_id}/epochs/0", json=body).status_code == 200
    put = team.call(
        "worker_admin", "PUT", f"/api/v1/runs/{run_id}/checkpoint?attempt=1&epoch=0", content=b"w"
    )
    assert put.status_code == 201, put.text
    done = team.call(
        "worker_admin", "POST", f"/api/v1/runs/{run_id}/finish", json={"attempt": 1, "status": "succeeded"}
    )
    assert done.status_code == 200, done.text
    return run_id


def bulk(team: Team, caller: str, action: str, run_ids: list[int], **extra: Any) -> Any:
    return team.call(
        caller, "POST", "/api/v1/run-actions", json={"action": action, "run_ids": run_ids, **extra}
    )


def listed(team: Team, caller: str = "editor", lifecycle: str | None = None) -> set[int]:
    query = "?limit=500" + (f"&lifecycle={lifecycle}" if lifecycle else "")
    response = team.call(caller, "GET", f"/api/v1/runs{query}")
    assert response.status_code == 200, response.text
    return {run["id"] for run in response.json()}


def snapshot(team: Team) -> list[tuple[Any, ...]]:
    with team.db.session(write=False) as session:
        rows = session.execute(select(Run.id, Run.tags, Run.archived_at, Run.deleted_at).order_by(Run.id))
        return [tuple(row) for row in rows]


def test_tag_and_untag_many_runs_keep_other_tags(team: Team) -> None:
    a, b = team.job(), team.job()
    assert bulk(team, "editor", "tag", [a, b], tags=["keep"]).status_code == 200
    answer = bulk(team, "editor", "tag", [a, b, a], tags=["paper", "keep"]).json()
    assert answer == {"action": "tag", "run_ids": [a, b], "changed": [a, b]}
    assert team.call("viewer", "GET", f"/api/v1/runs/{a}").json()["tags"] == ["keep", "paper"]
    assert bulk(team, "editor", "untag", [a, b], tags=["paper"]).json()["changed"] == [a, b]
    assert team.call("viewer", "GET", f"/api/v1/runs/{b}").json()["tags"] == ["keep"]
    assert bulk(team, "editor", "untag", [a], tags=["paper"]).json()["changed"] == []


def test_archive_hides_from_lists_until_unarchived(team: Team) -> None:
    a, b = finished(team), finished(team)
    answer = bulk(team, "editor", "archive", [a])
    assert answer.status_code == 200 and answer.json()["changed"] == [a]
    assert a not in listed(team) and b in listed(team)
    assert listed(team, lifecycle="archived") == {a}
    assert {a, b} <= listed(team, lifecycle="all")
    one = team.call("viewer", "GET", f"/api/v1/runs/{a}").json()  # still readable by id
    assert one["archived_at"] is not None and one["deleted_at"] is None
    total = team.call("viewer", "GET", "/api/v1/runs").headers["X-Total-Count"]
    assert int(total) == len(listed(team, "viewer"))
    assert bulk(team, "editor", "archive", [a]).json()["changed"] == []  # again: nothing to do
    assert bulk(team, "editor", "unarchive", [a]).json()["changed"] == [a]
    assert a in listed(team) and listed(team, lifecycle="archived") == set()


def test_delete_moves_to_trash_and_restore_brings_back(team: Team) -> None:
    a = finished(team)
    assert bulk(team, "editor", "delete", [a]).json()["changed"] == [a]
    assert a not in listed(team) and a not in listed(team, lifecycle="all")
    assert listed(team, lifecycle="trash") == {a}
    assert bulk(team, "editor", "delete", [a]).json()["changed"] == []  # idempotent
    refused = bulk(team, "editor", "archive", [a])
    assert refused.status_code == 409 and "trash" in refused.json()["message"]
    assert bulk(team, "editor", "restore", [a]).json()["changed"] == [a]
    assert a in listed(team) and listed(team, lifecycle="trash") == set()


def test_active_runs_cannot_be_archived_or_deleted(team: Team) -> None:
    done, queued, running = finished(team), team.job(), team.running_job()
    for action in ("archive", "delete"):
        refused = bulk(team, "editor", action, [done, queued, running])
        assert refused.status_code == 409, refused.text
        message = refused.json()["message"]
        assert f"{queued} (queued)" in message and f"{running} (running)" in message and "cancel" in message
    assert done in listed(team) and bulk(team, "editor", "tag", [queued], tags=["t"]).status_code == 200


def test_purge_removes_rows_and_checkpoints(team: Team, settings: Settings) -> None:
    a, keep = finished(team), finished(team)
    store = CheckpointStore.from_settings(settings)
    assert store.latest(a) is not None
    refused = bulk(team, "owner", "purge", [a])
    assert refused.status_code == 409 and "not in the trash" in refused.json()["message"]
    assert bulk(team, "editor", "delete", [a]).status_code == 200
    assert bulk(team, "editor", "purge", [a]).status_code == 403  # owners only
    answer = bulk(team, "owner", "purge", [a])
    assert answer.status_code == 200 and answer.json()["changed"] == [a]
    assert team.call("owner", "GET", f"/api/v1/runs/{a}").status_code == 404
    assert store.latest(a) is None and store.latest(keep) is not None
    with team.db.session(write=False) as session:
        assert session.scalar(select(func.count()).select_from(Epoch).where(Epoch.run_id == a)) == 0
        assert session.scalar(select(func.count()).select_from(RunEvent).where(RunEvent.run_id == a)) == 0
        assert session.scalar(select(func.count()).select_from(Epoch).where(Epoch.run_id == keep)) == 1


@pytest.mark.parametrize("action", ["tag", "archive", "delete", "restore", "purge"])
def test_viewer_is_refused_and_nothing_changes(team: Team, action: str) -> None:
    a = finished(team)
    before = snapshot(team)
    extra = {"tags": ["x"]} if action == "tag" else {}
    refused = bulk(team, "viewer", action, [a], **extra)
    assert refused.status_code == 403, refused.text
    assert snapshot(team) == before


@pytest.mark.parametrize("caller", ["outsider", "editor"])
@pytest.mark.parametrize("action", ["tag", "archive", "delete", "purge"])
def test_attacker_with_a_foreign_run_id_changes_nothing(team: Team, caller: str, action: str) -> None:
    """One run of another team in the request: the same 404 as a missing run, and no run changed."""
    mine = finished(team, "other" if caller == "outsider" else "team")
    theirs = finished(team, "team" if caller == "outsider" else "other")
    if action == "purge":  # the attacker's own run is in the trash, and they own "other"
        caller = "outsider"
        mine, theirs = finished(team, "other"), finished(team, "team")
        assert bulk(team, "outsider", "delete", [mine]).status_code == 200
        assert bulk(team, "admin", "delete", [theirs]).status_code == 200
    before = snapshot(team)
    extra = {"tags": ["x"]} if action == "tag" else {}
    refused = bulk(team, caller, action, [mine, theirs], **extra)
    missing = bulk(team, caller, action, [mine, 999_999], **extra)
    assert refused.status_code == 404 and missing.status_code == 404, refused.text
    assert refused.json()["message"] == f"run {theirs} does not exist; nothing was changed"
    assert missing.json()["message"] == "run 999999 does not exist; nothing was changed"
    assert snapshot(team) == before


def test_worker_tokens_are_refused(team: Team) -> None:
    a = finished(team)
    assert bulk(team, "worker_admin", "archive", [a]).status_code == 403
    assert bulk(team, "worker_team", "archive", [a]).status_code == 403


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"action": "archive", "run_ids": []}, "run_ids"),
        ({"action": "archive", "run_ids": list(range(1, 1002))}, "run_ids"),
        ({"action": "explode", "run_ids": [1]}, "action"),
        ({"action": "tag", "run_ids": [1]}, "tags"),
        ({"action": "archive", "run_ids": [1], "tags": ["x"]}, "tags"),
        ({"action": "tag", "run_ids": [1], "tags": ["x" * 65]}, "tags"),
        ({"action": "archive", "run_ids": ["one"]}, "run_ids"),
        ({"action": "archive", "run_ids": [1], "extra": 1}, "extra"),
        ({"action": "archive", "run_ids": [2**31]}, "less than or equal to 2147483647"),
        ({"action": "archive", "run_ids": [0]}, "greater than or equal to 1"),
        ({"action": "archive", "run_ids": ["2_0"]}, "valid integer"),  # lax parsing read 20
        ({"action": "archive", "run_ids": ["+2"]}, "valid integer"),
        ({"action": "archive", "run_ids": [True]}, "valid integer"),
        ({"action": "archive", "run_ids": [2.0]}, "valid integer"),
    ],
)
def test_bad_bulk_request_names_the_field(team: Team, body: dict[str, Any], field: str) -> None:
    response = team.call("editor", "POST", "/api/v1/run-actions", json=body)
    assert response.status_code == 422, response.text
    assert field in response.text


def test_runs_purged_by_another_request_meanwhile_are_404_not_a_success(
    team: Team, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another request purged the runs between the permission check and the row lock (PostgreSQL
    reads the first without a lock): the answer is the 404 of a missing run, and nothing changes."""
    from app.runs import bulk as bulk_module

    a, b = finished(team), finished(team)
    assert bulk(team, "editor", "delete", [a, b]).status_code == 200
    real = bulk_module._authorize

    def then_purged(*, session: Any, **kwargs: Any) -> None:
        real(session=session, **kwargs)
        bulk_module.purge(session=session, run_ids=[b])  # as the other request's committed purge

    monkeypatch.setattr(bulk_module, "_authorize", then_purged)
    answer = bulk(team, "owner", "restore", [a, b])
    assert answer.status_code == 404 and f"run {b} does not exist" in answer.json()["message"], answer.text
    monkeypatch.undo()
    assert listed(team, lifecycle="trash") >= {a, b}  # nothing changed: both still in the trash


def test_list_refuses_an_unknown_lifecycle(team: Team) -> None:
    response = team.call("editor", "GET", "/api/v1/runs?lifecycle=gone")
    assert response.status_code == 422 and "lifecycle" in response.text


def test_tag_over_the_limit_on_one_run_changes_no_run(team: Team) -> None:
    full, other = finished(team), finished(team)
    assert bulk(team, "editor", "tag", [full], tags=[f"t{i}" for i in range(31)]).status_code == 200
    before = snapshot(team)
    refused = bulk(team, "editor", "tag", [other, full], tags=["x", "y"])
    assert refused.status_code == 422 and f"run {full} would carry 33 tags" in refused.json()["message"]
    assert snapshot(team) == before


def test_crashed_sdk_run_in_the_trash_is_not_revived(team: Team) -> None:
    created = team.call("editor", "POST", "/api/v1/runs", json={"project": "team"}).json()
    run_id = created["id"]
    with team.db.transaction() as session:
        session.execute(update(Run).where(Run.id == run_id).values(status="crashed"))
    assert bulk(team, "editor", "delete", [run_id]).status_code == 200
    beat = team.call("editor", "POST", f"/api/v1/runs/{run_id}/heartbeat", json={"attempt": 1})
    resumed = team.call("editor", "POST", f"/api/v1/runs/{run_id}/resume")
    assert beat.status_code == 409 and resumed.status_code == 409, (beat.text, resumed.text)
    assert "trash" in resumed.json()["message"]
    assert team.call("editor", "GET", f"/api/v1/runs/{run_id}").json()["status"] == "crashed"
