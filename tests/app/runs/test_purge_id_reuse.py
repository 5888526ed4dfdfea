"""A purged run's id is never handed to a new run (review-attack finding).

On SQLite the ``runs`` table has no AUTOINCREMENT, so purging the newest run frees its id and the next
run created — in any project — gets it again. Whatever still names the old id then names the new run:
checkpoints the purge could not remove yet (the maintenance sweep only drops files whose id has no
row), a stale SDK process of the purged run (same id, same attempt 1), bookmarked compare URLs and
pinned reports. PostgreSQL sequences never reuse an id."""

from __future__ import annotations

import pytest
from teamkit import Team
from test_bulk_runs import bulk, finished

from app.runs.artifacts import CheckpointStore


def test_purged_run_id_is_never_given_to_a_new_run(team: Team) -> None:
    finished(team)
    newest = finished(team)
    assert bulk(team, "owner", "delete", [newest]).status_code == 200
    assert bulk(team, "owner", "purge", [newest]).status_code == 200
    fresh = team.job("other")  # the outsider's project
    assert fresh > newest, f"run {fresh} of project 'other' reuses the id of purged run {newest} of 'team'"


def test_new_run_in_another_project_never_reads_a_purged_runs_checkpoint(
    team: Team, monkeypatch: pytest.MonkeyPatch
) -> None:
    finished(team)
    newest = finished(team)  # holds a checkpoint (b"w")
    assert bulk(team, "owner", "delete", [newest]).status_code == 200

    def unavailable(self: CheckpointStore, run_id: int) -> None:
        raise OSError("artifact store unavailable")  # removal is retried later (remove_artifacts)

    with monkeypatch.context() as patch:
        patch.setattr(CheckpointStore, "remove", unavailable)
        assert bulk(team, "owner", "purge", [newest]).status_code == 200
    fresh = team.job("other")
    read = team.call("outsider", "GET", f"/api/v1/runs/{fresh}/checkpoint")
    assert read.status_code == 404, f"the outsider's new run {fresh} serves purged run {newest}'s checkpoint"


def test_sdk_run_and_sweep_created_after_a_purge_start_above_every_purged_id(team: Team) -> None:
    first = finished(team)
    newest = finished(team)
    assert bulk(team, "owner", "delete", [first, newest]).status_code == 200
    assert bulk(team, "owner", "purge", [first, newest]).status_code == 200
    sdk = team.call("outsider", "POST", "/api/v1/runs", json={"project": "other"})
    assert sdk.status_code == 201 and sdk.json()["id"] > newest, sdk.text
    sweep = team.call("admin", "POST", "/api/v1/jobs", json={"project": "team", "seeds": [0, 1, 2]})
    ids = [run["id"] for run in sweep.json()]
    assert min(ids) > sdk.json()["id"] and len(set(ids)) == 3, ids
