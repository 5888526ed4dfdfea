"""Every API write route for every kind of caller (allowed and refused), and the read routes for
members and outsiders: the role table of app/authz.py, exercised through the real app."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from apikit import STATS
from fastapi.testclient import TestClient
from teamkit import Team, build_team

from app.main import create_app
from app.settings import Settings
from tests.security.txcount import count_write_transactions

CALLERS = ("admin", "owner", "editor", "viewer", "outsider", "worker_team", "worker_other")
RANK = {"owner": 3, "editor": 2, "viewer": 1, "outsider": 0}
NEED_RANK = {"viewer": 1, "editor": 2, "ingest": 2, "owner": 3}


@pytest.fixture(scope="module")
def team(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Team]:
    tmp = tmp_path_factory.mktemp("authz")
    settings = Settings(
        database_url=f"sqlite:///{tmp / 'cw.db'}",
        broker_url=f"sqla+sqlite:///{tmp / 'broker.db'}",
        artifact_dir=tmp / "artifacts",
        secret_key="authz-secret",  # type: ignore[arg-type]
        maintenance_interval_seconds=0,
        _env_file=None,  # type: ignore[call-arg]
    )
    app = create_app(settings)
    app.state.enqueue = lambda run_id: None
    app.state.write_counter = count_write_transactions(app)  # checked by the last test below
    with TestClient(app) as client:
        yield build_team(client, app.state.db, settings.admin_email)


def expected_status(need: str, caller: str, allowed: int) -> int:
    """The answer ``caller`` gets on a route that needs ``need`` (allowed: the route's success code)."""
    if caller == "admin":
        return allowed
    if caller.startswith("worker"):
        if need != "ingest":
            return 403  # worker tokens only ingest
        return allowed if caller == "worker_team" else 404  # a token of another project sees nothing
    if RANK[caller] == 0:
        return 404  # not a member: the project and its runs do not exist for them
    return allowed if RANK[caller] >= NEED_RANK[need] else 403


Request = tuple[str, str, dict[str, Any]]
NAMES_A_PROJECT = ("create sdk run", "submit jobs")  # creates that name the project in their body


@dataclass(frozen=True)
class Route:
    name: str
    need: str
    allowed: int
    prepare: Callable[[Team], Request]


def _report(team: Team) -> int:
    run_id = team.job()
    body = {"project": "team", "title": "r", "query": f"runs={run_id}"}
    response = team.call("admin", "POST", "/api/v1/reports", json=body)
    assert response.status_code == 201, response.text
    return int(response.json()["id"])


def _share(team: Team) -> tuple[int, int]:
    report_id = _report(team)
    response = team.call("admin", "POST", f"/api/v1/reports/{report_id}/shares", json={})
    assert response.status_code == 201, response.text
    return report_id, int(response.json()["id"])


def _spare_member(team: Team) -> int:
    body = {"email": "spare@example.org", "role": "viewer"}
    assert team.call("admin", "PUT", "/api/v1/projects/team/members", json=body).status_code == 200
    return team.user_ids["spare"]


def _worker_token(team: Team) -> int:
    response = team.call("admin", "POST", "/api/v1/projects/team/worker-tokens", json={"name": "w"})
    assert response.status_code == 201, response.text
    return int(response.json()["id"])


def _epoch_body() -> dict[str, Any]:
    return {"attempt": 1, "metrics": {"val_acc": 0.5}, "stats": STATS}


def _trashed(team: Team) -> int:
    """A cancelled job of "team", deleted to the trash by the admin."""
    run_id = team.job()
    assert team.call("admin", "POST", f"/api/v1/runs/{run_id}/cancel").status_code == 200
    body = {"action": "delete", "run_ids": [run_id]}
    assert team.call("admin", "POST", "/api/v1/run-actions", json=body).status_code == 200
    return run_id


WRITE_ROUTES = [
    Route("create sdk run", "editor", 201, lambda t: ("POST", "/api/v1/runs", {"json": {"project": "team"}})),
    Route("submit jobs", "editor", 201, lambda t: ("POST", "/api/v1/jobs", {"json": {"project": "team"}})),
    Route("cancel", "editor", 200, lambda t: ("POST", f"/api/v1/runs/{t.job()}/cancel", {})),
    Route(
        "bulk tag",
        "editor",
        200,
        lambda t: (
            "POST",
            "/api/v1/run-actions",
            {"json": {"action": "tag", "run_ids": [t.job()], "tags": ["x"]}},
        ),
    ),
    Route(
        "bulk restore",
        "editor",
        200,
        lambda t: ("POST", "/api/v1/run-actions", {"json": {"action": "restore", "run_ids": [_trashed(t)]}}),
    ),
    Route(
        "bulk purge",
        "owner",
        200,
        lambda t: ("POST", "/api/v1/run-actions", {"json": {"action": "purge", "run_ids": [_trashed(t)]}}),
    ),
    Route("claim", "ingest", 200, lambda t: ("POST", f"/api/v1/runs/{t.job()}/claim", {"json": {}})),
    Route(
        "heartbeat",
        "ingest",
        200,
        lambda t: ("POST", f"/api/v1/runs/{t.running_job()}/heartbeat", {"json": {"attempt": 1}}),
    ),
    Route(
        "finish",
        "ingest",
        200,
        lambda t: (
            "POST",
            f"/api/v1/runs/{t.running_job()}/finish",
            {"json": {"attempt": 1, "status": "succeeded"}},
        ),
    ),
    Route(
        "append logs",
        "ingest",
        201,
        lambda t: ("POST", f"/api/v1/runs/{t.running_job()}/logs", {"json": {"attempt": 1, "lines": ["x"]}}),
    ),
    Route(
        "put epoch",
        "ingest",
        200,
        lambda t: ("PUT", f"/api/v1/runs/{t.running_job()}/epochs/0", {"json": _epoch_body()}),
    ),
    Route(
        "post metrics",
        "ingest",
        200,
        lambda t: (
            "POST",
            f"/api/v1/runs/{t.running_job()}/metrics",
            {"json": {"attempt": 1, "points": [{"key": "loss", "step": 1, "value": 0.5}]}},
        ),
    ),
    Route(
        "put checkpoint",
        "ingest",
        201,
        lambda t: (
            "PUT",
            f"/api/v1/runs/{t.running_job()}/checkpoint?attempt=1&epoch=0",
            {"content": b"state"},
        ),
    ),
    Route(
        "set member",
        "owner",
        200,
        lambda t: (
            "PUT",
            "/api/v1/projects/team/members",
            {"json": {"email": "spare@example.org", "role": "editor"}},
        ),
    ),
    Route(
        "remove member",
        "owner",
        204,
        lambda t: ("DELETE", f"/api/v1/projects/team/members/{_spare_member(t)}", {}),
    ),
    Route(
        "invite",
        "owner",
        201,
        lambda t: ("POST", "/api/v1/projects/team/invitations", {"json": {"email": "new@example.org"}}),
    ),
    Route(
        "create worker token",
        "owner",
        201,
        lambda t: ("POST", "/api/v1/projects/team/worker-tokens", {"json": {"name": "gpu box"}}),
    ),
    Route(
        "revoke worker token",
        "owner",
        204,
        lambda t: ("DELETE", f"/api/v1/projects/team/worker-tokens/{_worker_token(t)}", {}),
    ),
    Route(
        "create report",
        "editor",
        201,
        lambda t: (
            "POST",
            "/api/v1/reports",
            {"json": {"project": "team", "title": "t", "query": f"runs={t.job()}", "notes": "*hi*"}},
        ),
    ),
    Route(
        "create share link",
        "editor",
        201,
        lambda t: ("POST", f"/api/v1/reports/{_report(t)}/shares", {"json": {}}),
    ),
    Route(
        "revoke share link",
        "editor",
        204,
        lambda t: ("DELETE", "/api/v1/reports/{}/shares/{}".format(*_share(t)), {}),
    ),
]

READ_ROUTES = [
    Route("get run", "viewer", 200, lambda t: ("GET", f"/api/v1/runs/{t.job()}", {})),
    Route("list epochs", "viewer", 200, lambda t: ("GET", f"/api/v1/runs/{t.job()}/epochs", {})),
    Route("epochs csv", "viewer", 200, lambda t: ("GET", f"/api/v1/runs/{t.job()}/epochs.csv", {})),
    Route("epochs json", "viewer", 200, lambda t: ("GET", f"/api/v1/runs/{t.job()}/epochs.json", {})),
    Route("list logs", "viewer", 200, lambda t: ("GET", f"/api/v1/runs/{t.job()}/logs", {})),
    Route("series", "viewer", 200, lambda t: ("GET", f"/api/v1/series?run={t.job()}&key=mean_sv", {})),
    Route("members", "viewer", 200, lambda t: ("GET", "/api/v1/projects/team/members", {})),
    Route("reports", "viewer", 200, lambda t: ("GET", "/api/v1/projects/team/reports", {})),
    Route("report", "viewer", 200, lambda t: ("GET", f"/api/v1/reports/{_report(t)}", {})),
    Route("report csv", "viewer", 200, lambda t: ("GET", f"/api/v1/reports/{_report(t)}/series.csv", {})),
]


def _cases(routes: list[Route]) -> list[Any]:
    return [
        pytest.param(route, caller, id=f"{route.name}-{caller}") for route in routes for caller in CALLERS
    ]


@pytest.mark.parametrize(("route", "caller"), _cases(WRITE_ROUTES))
def test_write_route_allows_or_refuses_each_caller(team: Team, route: Route, caller: str) -> None:
    method, path, kwargs = route.prepare(team)
    response = team.call(caller, method, path, **kwargs)
    expected = expected_status(route.need, caller, route.allowed)
    if route.name in NAMES_A_PROJECT and expected == 404:
        expected = 409  # creating in a project one cannot see: "the name is taken", nothing more
    assert response.status_code == expected, response.text


@pytest.mark.parametrize(("route", "caller"), _cases(READ_ROUTES))
def test_read_route_allows_members_and_hides_from_outsiders(team: Team, route: Route, caller: str) -> None:
    method, path, kwargs = route.prepare(team)
    response = team.call(caller, method, path, **kwargs)
    assert response.status_code == expected_status(route.need, caller, route.allowed), response.text


def test_refused_outsider_gets_the_same_404_as_for_a_missing_run(team: Team) -> None:
    run_id = team.job()
    hidden = team.call("outsider", "GET", f"/api/v1/runs/{run_id}").json()["message"]
    missing = team.call("outsider", "GET", "/api/v1/runs/999999").json()["message"]
    assert hidden == f"run {run_id} does not exist" and missing == "run 999999 does not exist"
    assert team.call("outsider", "GET", f"/api/v1/runs/{run_id}/events").status_code == 404


def test_run_list_and_projects_show_only_the_callers_projects(team: Team) -> None:
    mine = team.job("team")
    theirs = team.job("other")
    outsider_ids = {r["id"] for r in team.call("outsider", "GET", "/api/v1/runs?limit=500").json()}
    viewer_ids = {r["id"] for r in team.call("viewer", "GET", "/api/v1/runs?limit=500").json()}
    assert theirs in outsider_ids and mine not in outsider_ids
    assert mine in viewer_ids and theirs not in viewer_ids
    names = {p["name"]: p["role"] for p in team.call("viewer", "GET", "/api/v1/projects").json()}
    assert names == {"team": "viewer"}
    series = team.call("viewer", "GET", f"/api/v1/series?run={mine}&run={theirs}&key=mean_sv")
    assert series.status_code == 404 and str(theirs) in series.json()["message"]


def test_new_project_by_a_user_makes_them_owner(team: Team) -> None:
    response = team.call("viewer", "POST", "/api/v1/jobs", json={"project": "viewers-own"})
    assert response.status_code == 201
    roles = {p["name"]: p["role"] for p in team.call("viewer", "GET", "/api/v1/projects").json()}
    assert roles["viewers-own"] == "owner"
    refused = team.call("worker_team", "POST", "/api/v1/jobs", json={"project": "workers-own"})
    assert refused.status_code == 403


def test_last_owner_cannot_be_demoted_or_removed(team: Team) -> None:
    demote = {"email": "owner@example.org", "role": "editor"}
    assert team.call("owner", "PUT", "/api/v1/projects/team/members", json=demote).status_code == 409
    owner_id = team.user_ids["owner"]
    assert team.call("owner", "DELETE", f"/api/v1/projects/team/members/{owner_id}").status_code == 409


def test_revoked_project_worker_token_can_no_longer_ingest(team: Team) -> None:
    created = team.call("owner", "POST", "/api/v1/projects/team/worker-tokens", json={"name": "tmp"}).json()
    assert created["token"].startswith("cw_") and created["projects"] == ["team"]
    run_id = team.job()
    headers = {"Authorization": f"Bearer {created['token']}"}
    listed = team.call("owner", "GET", "/api/v1/projects/team/worker-tokens").json()
    assert all("token" not in row for row in listed) and created["id"] in {row["id"] for row in listed}
    assert (
        team.call("owner", "DELETE", f"/api/v1/projects/team/worker-tokens/{created['id']}").status_code
        == 204
    )
    assert team.client.post(f"/api/v1/runs/{run_id}/claim", json={}, headers=headers).status_code == 401


def test_all_runs_event_stream_drops_frames_of_unreadable_runs(team: Team) -> None:
    import asyncio
    from collections.abc import AsyncIterator
    from types import SimpleNamespace

    from app.api.access import guarded_frames
    from app.auth.roles import Actor

    mine, theirs = team.job("team"), team.job("other")

    async def frames() -> AsyncIterator[bytes]:
        yield b"retry: 1000\n\n"
        for run_id in (mine, theirs, mine):
            yield f'id: 1\nevent: status\ndata: {{"status":"queued","run_id":{run_id}}}\n\n'.encode()

    async def collect(actor: Actor) -> list[bytes]:
        request: Any = SimpleNamespace(app=SimpleNamespace(state=SimpleNamespace(db=team.db)))
        return [frame async for frame in guarded_frames(request, actor, frames())]

    viewer = asyncio.run(collect(Actor(team.user_ids["viewer"])))
    admin = asyncio.run(collect(Actor(team.user_ids["admin"], is_admin=True)))
    assert len(viewer) == 3 and all(f'"run_id":{theirs}'.encode() not in f for f in viewer)
    assert len(admin) == 4


def test_no_request_above_opened_two_write_transactions(team: Team) -> None:
    """Every write and read route above, for every caller (run last: the module's requests)."""
    counter = team.client.app.state.write_counter  # type: ignore[attr-defined]
    assert len(counter.seen) > 300 and counter.over(1) == []
