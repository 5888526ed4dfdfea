"""Heavy reads (chart pages, series, exports) take turns, HEAVY_READ_CONCURRENCY at a time per
process (``app.deps.heavy_read_slot``), while ingestion does not wait for them."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from apikit import STATS, Recorder
from fastapi.testclient import TestClient

from app.api import series as series_api
from app.auth.api_tokens import create_token, ensure_admin
from app.deps import HEAVY_READ
from app.main import create_app
from app.settings import Settings
from tests.security.seckit import route_objects

HEAVY_ROUTES = {
    ("GET", "/api/v1/series"),
    ("GET", "/api/v1/runs/{run_id}/epochs.csv"),
    ("GET", "/api/v1/runs/{run_id}/epochs.json"),
    ("GET", "/api/v1/reports/{report_id}/series.csv"),
    ("GET", "/compare"),
    ("GET", "/runs/{run_id}"),
    ("GET", "/reports/{report_id}"),
    ("GET", "/reports/{report_id}/export.html"),
    ("GET", "/reports/{report_id}/export.csv"),
    ("GET", "/s/{token}"),
    ("GET", "/s/{token}/export.html"),
    ("GET", "/s/{token}/export.csv"),
}


def test_the_heavy_read_routes_and_only_they_take_a_slot(settings: Settings) -> None:
    gated = {
        (method, path)
        for path, route in route_objects(list(create_app(settings).routes))
        for method in getattr(route, "methods", None) or []
        if HEAVY_READ in (getattr(route, "dependencies", None) or [])
    }
    assert gated == HEAVY_ROUTES


@pytest.mark.parametrize("slots", [1, 2])
def test_heavy_reads_run_at_most_n_at_once_and_a_put_does_not_wait(settings: Settings, slots: int) -> None:
    app = create_app(settings.model_copy(update={"heavy_read_concurrency": slots}))
    app.state.enqueue = app.state.publisher = Recorder()
    inside, peak, lock = 0, 0, threading.Lock()
    release = threading.Event()
    original = series_api._render

    def slow_render(*args: Any) -> str:
        nonlocal inside, peak
        with lock:
            inside += 1
            peak = max(peak, inside)
        release.wait(10)
        with lock:
            inside -= 1
        return original(*args)

    with TestClient(app) as client:
        with app.state.db.transaction() as session:
            admin = ensure_admin(session=session, email=settings.admin_email)
            user = {"Authorization": f"Bearer {create_token(session=session, user=admin, name='u').token}"}
        run_id = client.post("/api/v1/runs", json={"project": "p"}, headers=user).json()["id"]
        params = {"run": run_id, "key": "mean_sv"}
        answers: list[int] = []

        def read() -> None:
            answers.append(client.get("/api/v1/series", params=params, headers=user).status_code)

        series_api._render = slow_render  # type: ignore[assignment]
        try:
            readers = [threading.Thread(target=read) for _ in range(slots + 2)]
            for reader in readers:
                reader.start()
            deadline = time.monotonic() + 10
            while inside < slots and time.monotonic() < deadline:
                time.sleep(0.01)
            # every slot is taken and two reads wait: ingestion still goes through
            body = {"attempt": 1, "metrics": {}, "stats": STATS}
            put = client.put(f"/api/v1/runs/{run_id}/epochs/0", json=body, headers=user)
            assert put.status_code == 200, put.text
            assert not release.is_set() and inside == slots
        finally:
            release.set()
            for reader in readers:
                reader.join(20)
            series_api._render = original  # type: ignore[assignment]
    assert answers == [200] * (slots + 2)
    assert peak == slots


def test_no_limit_when_the_setting_is_zero(settings: Settings) -> None:
    app = create_app(settings.model_copy(update={"heavy_read_concurrency": 0}))
    app.state.enqueue = lambda run_id: None
    with TestClient(app):
        assert app.state.heavy_reads is None
