"""Ingestion remembers a caller's access to a run for a few seconds (``app.auth.access_cache``), and
forgets it the moment a role is lowered or a member removed through this server: the next write is
refused, as without the cache. The run's state is never remembered (a run in the trash refuses)."""

from __future__ import annotations

import pytest
from teamkit import Team

from app.auth import access_cache, token_cache
from app.auth.access_cache import AccessCache
from app.auth.roles import Actor


def _metrics(team: Team, caller: str, run_id: int, step: int) -> int:
    body = {"attempt": 1, "points": [{"key": "loss", "step": step, "value": 0.5}]}
    return int(team.call(caller, "POST", f"/api/v1/runs/{run_id}/metrics", json=body).status_code)


def _editor_run(team: Team) -> int:
    created = team.call("editor", "POST", "/api/v1/runs", json={"project": "team"})
    assert created.status_code == 201, created.text
    run_id = int(created.json()["id"])
    assert _metrics(team, "editor", run_id, 0) == 200 and _metrics(team, "editor", run_id, 1) == 200
    return run_id


def test_a_removed_member_is_refused_at_the_next_write(team: Team) -> None:
    run_id = _editor_run(team)  # the second write was answered from the cache
    removed = team.call("owner", "DELETE", f"/api/v1/projects/team/members/{team.user_ids['editor']}")
    assert removed.status_code == 204, removed.text
    assert _metrics(team, "editor", run_id, 2) == 404


def test_a_member_lowered_to_viewer_is_refused_at_the_next_write(team: Team) -> None:
    run_id = _editor_run(team)
    lowered = team.call(
        "owner",
        "PUT",
        "/api/v1/projects/team/members",
        json={"email": "editor@example.org", "role": "viewer"},
    )
    assert lowered.status_code == 200, lowered.text
    assert _metrics(team, "editor", run_id, 2) == 403


def test_a_run_moved_to_the_trash_refuses_writes_while_its_access_is_remembered(team: Team) -> None:
    run_id = _editor_run(team)
    finished = team.call(
        "editor", "POST", f"/api/v1/runs/{run_id}/finish", json={"attempt": 1, "status": "succeeded"}
    )
    assert finished.status_code == 200, finished.text
    deleted = team.call(
        "owner", "POST", "/api/v1/run-actions", json={"action": "delete", "run_ids": [run_id]}
    )
    assert deleted.status_code == 200, deleted.text
    assert _metrics(team, "editor", run_id, 2) == 409


def test_access_cache_keeps_an_entry_ttl_seconds_and_drops_it_on_a_revoke(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    now = [1000.0]
    monkeypatch.setattr(token_cache.time, "monotonic", lambda: now[0])  # the caches share one clock
    cache = AccessCache()
    key = access_cache.key_of(Actor(7), 42)
    cache.put(key, 3, since=token_cache.generation())
    assert cache.get(key) == 3 and cache.get(access_cache.key_of(Actor(8), 42)) is None
    now[0] += access_cache.TTL_S
    assert cache.get(key) is None  # expired
    cache.put(key, 3, since=token_cache.generation())
    token_cache.forget_all()
    assert cache.get(key) is None  # a revoke or a role change empties it
    stale = token_cache.generation()
    token_cache.forget_all()
    cache.put(key, 3, since=stale)  # checked before a change that landed meanwhile: not kept
    assert cache.get(key) is None


@pytest.mark.parametrize("route", ["metrics", "heartbeat", "config", "epochs/0"])
def test_ingestion_routes_answer_in_the_order_of_the_checks(team: Team, route: str) -> None:
    """``app.api.access.IngestSession`` (the session and the access check as one dependency) answers
    as the two separate dependencies did: 401 before anything else, a malformed run id 422 (never a
    lookup), a run of another project 404, a viewer 403, before the body is looked at."""
    run_id = _editor_run(team)
    method = "PUT" if route.startswith("epochs") else "POST"
    body = {"attempt": 1, "points": []}  # not a valid body for most of them: the checks come first
    no_token = team.client.request(method, f"/api/v1/runs/{run_id}/{route}", json=body)
    assert no_token.status_code == 401
    for bad in ("0", str(2**31)):
        answer = team.call("editor", method, f"/api/v1/runs/{bad}/{route}", json=body)
        assert answer.status_code == 422 and ["path", "run_id"] in [e["loc"] for e in answer.json()["detail"]]
    assert team.call("outsider", method, f"/api/v1/runs/{run_id}/{route}", json=body).status_code == 404
    assert team.call("viewer", method, f"/api/v1/runs/{run_id}/{route}", json=body).status_code == 403
