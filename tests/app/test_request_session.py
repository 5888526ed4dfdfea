"""One pooled connection and one transaction per request: the auth lookups run in the request's own
session when the route has one (``app.deps.lookup_session``), which every route opens first."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import anyio.to_thread
import pytest
from apikit import STATS, Api
from fastapi.routing import APIRoute
from sqlalchemy import Engine, event, select

from app.auth.tokens import hash_token
from app.deps import get_principal, get_session
from app.main import create_app
from app.models import ApiToken
from app.pages.common import get_browser
from app.settings import Settings
from tests.security.seckit import route_objects

AUTH_DEPENDENCIES = (get_principal, get_browser)


@contextmanager
def checkouts(engine: Engine) -> Iterator[list[str]]:
    """Pool checkouts and transaction ends on ``engine`` while the block runs."""
    seen: list[str] = []

    def on_checkout(*_: Any) -> None:
        seen.append("checkout")

    def on_commit(*_: Any) -> None:
        seen.append("commit")

    event.listen(engine, "checkout", on_checkout)
    event.listen(engine, "commit", on_commit)
    try:
        yield seen
    finally:
        event.remove(engine, "checkout", on_checkout)
        event.remove(engine, "commit", on_commit)


def test_an_epoch_put_takes_one_connection_and_commits_once(api: Api) -> None:
    run_id = api.sdk_run()["id"]
    api.put_epoch(run_id, 0)  # the token's first use is recorded (see below)
    with checkouts(api.db.engine) as seen:
        response = api.client.put(
            f"/api/v1/runs/{run_id}/epochs/1",
            json={"attempt": 1, "metrics": {}, "stats": STATS},
            headers={"Authorization": f"Bearer {api.user_token}"},
        )
    assert response.status_code == 200, response.text
    assert seen == ["checkout", "commit"]


def test_a_read_with_a_token_takes_one_connection(api: Api) -> None:
    run_id = api.sdk_run()["id"]
    api.client.get("/api/v1/runs", headers=api.user)
    with checkouts(api.db.engine) as seen:
        response = api.client.get(f"/api/v1/runs/{run_id}/epochs", headers=api.user)
    assert response.status_code == 200, response.text
    assert seen == ["checkout"]


def test_a_page_and_a_cookie_read_take_one_connection_each(settings: Settings) -> None:
    from fastapi.testclient import TestClient

    app = create_app(settings.model_copy(update={"local_autologin": True}))
    app.state.enqueue = lambda run_id: None
    with TestClient(app) as client:
        assert client.get("/runs").status_code == 200  # signs in: the cookie is set
        engine = app.state.db.engine
        with checkouts(engine) as page:
            assert client.get("/runs").status_code == 200
        with checkouts(engine) as api_read:
            assert client.get("/api/v1/runs").status_code == 200
    assert page == ["checkout"]
    assert api_read == ["checkout"]


def _last_used(api: Api, token: str) -> Any:
    with api.db.session(write=False) as session:
        return session.scalar(select(ApiToken.last_used_at).where(ApiToken.token_hash == hash_token(token)))


def test_a_write_records_the_token_use_in_its_own_transaction(api: Api) -> None:
    """The touch rides the request's write session: on SQLite a second writer would wait for that
    session's lock (until the busy timeout) and the use would not be recorded."""
    run_id = api.sdk_run()["id"]
    assert _last_used(api, api.worker_token) is None
    assert api.put_epoch(run_id, 0).status_code == 200
    assert _last_used(api, api.worker_token) is not None


def test_a_refused_write_records_nothing_and_leaves_no_transaction_open(api: Api) -> None:
    run_id = api.sdk_run()["id"]
    response = api.put_epoch(run_id, 0, attempt=7)  # not the run's attempt: 409
    assert response.status_code == 409, response.text
    assert _last_used(api, api.worker_token) is None  # rolled back with the request
    assert api.put_epoch(run_id, 0).status_code == 200  # nothing left locked
    assert _last_used(api, api.worker_token) is not None


@contextmanager
def thread_hops(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Calls handed to the thread pool (sync dependencies, sync routes, our own ``run_in_threadpool``)."""
    hops: list[str] = []
    original = anyio.to_thread.run_sync

    async def counted(func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        hops.append(getattr(func, "__qualname__", repr(func)))
        return await original(func, *args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(anyio.to_thread, "run_sync", counted)
        yield hops


def test_an_epoch_put_makes_three_thread_hops_cold_and_one_warm_and_leaves_no_connection_out(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each hop waits for the GIL under load. The session opens and closes in the event loop (no
    I/O: the route committed). Cold, the caller, the permission check and the route each take a
    thread; a caller whose token was resolved and whose access to the run was checked a moment ago
    (``app.auth.token_cache``, ``app.auth.access_cache``) is answered in the event loop: only the
    route takes a thread."""
    run_id = api.sdk_run()["id"]
    with thread_hops(monkeypatch) as cold:
        assert api.put_epoch(run_id, 0).status_code == 200  # also records the token's first use
    assert len(cold) == 3, cold
    api.put_epoch(run_id, 1)  # the token is resolved again, now without a write due: remembered
    with thread_hops(monkeypatch) as warm:
        assert api.put_epoch(run_id, 2).status_code == 200
    assert len(warm) == 1, warm
    assert api.db.engine.pool.checkedout() == 0


def test_a_read_rolls_back_on_a_thread_and_returns_its_connection(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_id = api.sdk_run()["id"]
    with thread_hops(monkeypatch) as hops:
        response = api.client.get(f"/api/v1/runs/{run_id}/epochs", headers=api.user)
    assert response.status_code == 200, response.text
    assert any("close" in hop for hop in hops), hops  # the read's transaction ends off the loop
    assert api.db.engine.pool.checkedout() == 0


def _flat(dependant: Any) -> list[Callable[..., Any]]:
    calls: list[Callable[..., Any]] = []
    for sub in dependant.dependencies:
        calls += [*_flat(sub), sub.call]
    return calls


def test_every_route_opens_its_session_before_authenticating(settings: Settings) -> None:
    """FastAPI resolves dependencies in parameter order: a route that declares its auth dependency
    before ``session: SessionDep`` would authenticate on a second connection."""
    checked, late = 0, []
    for _path, route in route_objects(list(create_app(settings).routes)):
        if not isinstance(route, APIRoute):
            continue
        calls = _flat(route.dependant)
        auth = [calls.index(dep) for dep in AUTH_DEPENDENCIES if dep in calls]
        if get_session in calls and auth:
            checked += 1
            if min(auth) < calls.index(get_session):
                late.append(f"{sorted(route.methods)} {route.path}")
    assert checked > 50  # the API and the pages
    assert late == []
