"""The epoch PUT on SQLite: a new epoch is written by the event loop itself (``app.series.epoch_sqlite``)
once the caller's access is known, and a write lock held elsewhere sends it the usual way, which
waits its turn instead of failing or stalling the event loop."""

from __future__ import annotations

from typing import Any

import pytest
from apikit import Api, spy_on, under_write_lock
from sqlalchemy import select

from app.models import Epoch
from app.series import epoch_sqlite


@pytest.fixture
def spied(api: Api, monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    if api.db.engine.dialect.name != "sqlite":
        pytest.skip("SQLite's event-loop write")
    return spy_on(monkeypatch, epoch_sqlite, "insert_new_epoch")


def _stored(api: Api, run_id: int) -> list[int]:
    with api.db.session(write=False) as session:
        return list(session.scalars(select(Epoch.epoch).where(Epoch.run_id == run_id).order_by(Epoch.epoch)))


def test_new_epochs_are_written_by_the_event_loop_once_access_is_known(api: Api, spied: list[Any]) -> None:
    run = api.sdk_run()
    for epoch in (0, 1, 2, 3):  # the token and access caches warm up on the first ones
        assert api.put_epoch(run["id"], epoch).status_code == 200
    assert len(spied) >= 2 and all(event is not None for event in spied)
    replay = api.put_epoch(run["id"], 3)
    assert replay.status_code == 200 and spied[-1] is None  # stored already: answered the usual way
    assert replay.json()["epoch"] == 3
    assert _stored(api, run["id"]) == [0, 1, 2, 3]
    published = [payload["epoch"] for _, kind, payload in api.recorder.published if kind == "epoch"]
    assert published == [0, 1, 2, 3]


def test_an_epoch_put_while_another_connection_holds_the_write_lock_waits_its_turn(
    api: Api, spied: list[Any]
) -> None:
    run = api.sdk_run()
    for epoch in (0, 1, 2):
        assert api.put_epoch(run["id"], epoch).status_code == 200
    assert spied and spied[-1] is not None  # warm: new epochs go to the event loop's connection
    response, waited = under_write_lock(api, lambda: api.put_epoch(run["id"], 3))
    assert response.status_code == 200, response.text
    assert spied[-1] is None and waited >= 0.4  # not by the event loop: in a thread, after the lock
    assert _stored(api, run["id"]) == [0, 1, 2, 3]


def test_a_big_epoch_is_written_in_a_thread_not_by_the_event_loop(api: Api, spied: list[Any]) -> None:
    """Over ``MAX_BODY_BYTES`` (wide layers, say) the write would hold the event loop for
    milliseconds: it takes the usual path, and stores the same."""
    from apikit import STATS

    from app.loop_sqlite import MAX_BODY_BYTES

    run = api.sdk_run()
    for epoch in (0, 1, 2):
        assert api.put_epoch(run["id"], epoch).status_code == 200
    calls = len(spied)
    wide = STATS | {"dim_std": [0.123456789] * 6000}
    response = api.put_epoch(run["id"], 3, stats=wide)
    assert len(response.request.content) > MAX_BODY_BYTES
    assert response.status_code == 200 and len(spied) == calls  # not tried on the event loop
    assert _stored(api, run["id"]) == [0, 1, 2, 3]
    assert api.put_epoch(run["id"], 4).status_code == 200 and len(spied) == calls + 1


def test_a_chunked_epoch_body_is_written_in_a_thread(api: Api, spied: list[Any]) -> None:
    """No Content-Length: its size is unknown until read, so it is not the event loop's to write."""
    import json

    run = api.sdk_run()
    for epoch in (0, 1, 2):
        assert api.put_epoch(run["id"], epoch).status_code == 200
    calls = len(spied)
    body = json.dumps({"attempt": 1, "metrics": {"val_acc": 0.5}}).encode()
    response = api.client.put(
        f"/api/v1/runs/{run['id']}/epochs/3",
        content=iter([body[:10], body[10:]]),  # a generator: sent chunked
        headers=api.worker | {"content-type": "application/json"},
    )
    assert "content-length" not in response.request.headers
    assert response.status_code == 200, response.text
    assert len(spied) == calls and _stored(api, run["id"]) == [0, 1, 2, 3]


def test_the_epoch_is_published_before_a_due_checkpoint_runs(
    api: Api, spied: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Upkeep comes last: whatever happens to the request while it waits for the checkpoint (a
    shutdown cancelling it), its committed epoch has been announced."""
    from app import loop_sqlite

    monkeypatch.setattr(loop_sqlite, "CHECKPOINT_EVERY", 1)
    seen: list[list[int]] = []
    real = loop_sqlite.LoopSqlite.checkpoint

    def checkpoint(self: Any) -> bool:
        seen.append([payload["epoch"] for _, kind, payload in api.recorder.published if kind == "epoch"])
        return real(self)

    monkeypatch.setattr(loop_sqlite.LoopSqlite, "checkpoint", checkpoint)
    run = api.sdk_run()
    for epoch in range(5):
        assert api.put_epoch(run["id"], epoch).status_code == 200
    loop_written = sum(event is not None for event in spied)
    assert loop_written >= 2 and len(seen) == loop_written
    assert all(published and published[-1] == len(published) - 1 for published in seen)
    assert seen[-1] == [0, 1, 2, 3, 4]
