"""The metrics POST on SQLite: once the caller's access is known, a batch is written by the event loop
itself (``app.series.metrics_sqlite``), storing exactly what the usual path stores; anything else
(a refusal, a write lock held elsewhere, a big or chunked body) goes the usual way and answers as
before."""

from __future__ import annotations

import json
import re
import sqlite3
import time
from typing import Any

import pytest
from apikit import Api, spy_on, under_write_lock
from sqlalchemy import text

from app.series import metrics_sqlite


@pytest.fixture
def spied(api: Api, monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    if api.db.engine.dialect.name != "sqlite":
        pytest.skip("SQLite's event-loop write")
    return spy_on(monkeypatch, metrics_sqlite, "write_new_points")


def _post(api: Api, run_id: int, points: list[tuple[str, int, float]], attempt: int = 1) -> Any:
    body = {"attempt": attempt, "points": [{"key": k, "step": s, "value": v} for k, s, v in points]}
    return api.client.post(f"/api/v1/runs/{run_id}/metrics", json=body, headers=api.worker)


def _warm(api: Api, run_id: int) -> None:
    """The token and access caches warm up on a caller's first requests."""
    for step in range(3):
        assert _post(api, run_id, [("warm", step, 0.0)]).status_code == 200


def _stored(api: Api, run_id: int) -> tuple[list[Any], list[Any], str]:
    """The run's metrics rows, its chunks (blobs as stored) and the text of its updated_at."""
    with api.db.engine.connect() as conn:
        rows = conn.execute(
            text("SELECT key, step, value, attempt FROM metrics WHERE run_id = :r ORDER BY key, step"),
            {"r": run_id},
        ).all()
        chunks = conn.execute(
            text(
                "SELECT key, chunk, n, steps, vals FROM metric_chunks WHERE run_id = :r ORDER BY key, chunk"
            ),
            {"r": run_id},
        ).all()
        touched = conn.execute(text("SELECT updated_at FROM runs WHERE id = :r"), {"r": run_id}).scalar_one()
    return [tuple(r) for r in rows], [tuple(c) for c in chunks], str(touched)


# batches that exercise every branch of the write: several keys, unsorted and repeated steps (the last
# value wins), chunks spanned, appended to, and rewritten in the middle
BATCHES: list[list[tuple[str, int, float]]] = [
    [("loss", s, 1.0 / (s + 1)) for s in range(600)],
    [("loss", s, -1.5) for s in range(600, 700)] + [("acc", s, s / 1000) for s in range(0, 900, 3)],
    [("loss", 300, 7.0), ("loss", 5, 0.25), ("acc", 3, 2.0), ("loss", 300, 8.0), ("new/key", 10**15, 1e-300)],
    [("acc", s, float(s)) for s in range(1000, 0, -1)],
]


def test_a_batch_is_written_by_the_event_loop_and_stores_what_the_usual_path_stores(
    api: Api, spied: list[Any]
) -> None:
    loop_run, thread_run = api.sdk_run()["id"], api.sdk_run()["id"]
    _warm(api, loop_run)
    _warm(api, thread_run)
    assert spied and spied[-1] == 1  # warm: the event loop writes
    by_loop = []
    for batch in BATCHES:
        response = _post(api, loop_run, batch)
        assert response.status_code == 200
        assert response.json() == {"run": loop_run, "accepted": len({(k, s) for k, s, _ in batch})}
        by_loop.append(spied[-1] is not None)
    assert by_loop == [True, True, False, True]  # the third spans 10**15 steps: the usual path
    state = api.client.app.state
    loop_db, state.loop_sqlite = state.loop_sqlite, None  # the usual path, in a thread
    calls = len(spied)
    try:
        for batch in BATCHES:
            response = _post(api, thread_run, batch)
            assert response.status_code == 200
            assert response.json() == {"run": thread_run, "accepted": len({(k, s) for k, s, _ in batch})}
    finally:
        state.loop_sqlite = loop_db
    assert len(spied) == calls
    loop_rows, loop_chunks, loop_touched = _stored(api, loop_run)
    thread_rows, thread_chunks, thread_touched = _stored(api, thread_run)
    expected: dict[tuple[str, int], float] = {("warm", s): 0.0 for s in range(3)}
    for batch in BATCHES:
        expected |= {(k, s): v for k, s, v in batch}
    assert {(k, s): v for k, s, v, _ in loop_rows} == expected and len(loop_rows) == len(expected)
    assert loop_rows == thread_rows and loop_chunks == thread_chunks
    stamp = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6}"  # SQLAlchemy's DateTime text on SQLite
    assert re.fullmatch(stamp, loop_touched) and re.fullmatch(stamp, thread_touched)
    series = api.client.get(
        "/api/v1/series", params={"run": [loop_run], "key": "loss", "max_points": 10_000}, headers=api.user
    ).json()
    assert [p["y"] for p in series[0]["points"]][299:302] == [1.0 / 300, 8.0, 1.0 / 302]


def test_the_run_is_touched_and_refusals_answer_as_before(api: Api, spied: list[Any]) -> None:
    run = api.sdk_run()
    _warm(api, run["id"])
    before = _stored(api, run["id"])[2]
    time.sleep(0.01)
    assert _post(api, run["id"], [("loss", 1, 1.0)]).status_code == 200 and spied[-1] == 1
    assert _stored(api, run["id"])[2] > before
    stale = _post(api, run["id"], [("loss", 2, 1.0)], attempt=2)
    assert stale.status_code == 409 and "has not been claimed" in stale.json()["message"]
    assert spied[-1] is None  # nothing written by the event loop: the usual path answered
    finished = api.client.post(
        f"/api/v1/runs/{run['id']}/finish", json={"attempt": 1, "status": "succeeded"}, headers=api.worker
    )
    assert finished.status_code == 200, finished.text
    late = _post(api, run["id"], [("loss", 3, 1.0)])
    assert late.status_code == 409 and "accepts no more writes" in late.json()["message"]
    assert spied[-1] is None
    rows = _stored(api, run["id"])[0]
    assert [(k, s) for k, s, _, _ in rows] == [("loss", 1), ("warm", 0), ("warm", 1), ("warm", 2)]


def test_a_batch_while_another_connection_holds_the_write_lock_waits_its_turn(
    api: Api, spied: list[Any]
) -> None:
    run = api.sdk_run()
    _warm(api, run["id"])
    response, waited = under_write_lock(
        api, lambda: _post(api, run["id"], [("loss", s, 0.5) for s in range(1000)])
    )
    assert response.status_code == 200, response.text
    assert spied[-1] is None and waited >= 0.4  # not by the event loop: in a thread, after the lock
    assert len(_stored(api, run["id"])[0]) == 1003


def test_a_big_or_chunked_batch_is_written_in_a_thread(api: Api, spied: list[Any]) -> None:
    from app.loop_sqlite import MAX_BODY_BYTES

    run = api.sdk_run()
    _warm(api, run["id"])
    calls = len(spied)
    long_key = "k" * 120
    big = _post(api, run["id"], [(long_key, s, 0.123456789) for s in range(1000)])
    assert len(big.request.content) > MAX_BODY_BYTES
    assert big.status_code == 200 and big.json()["accepted"] == 1000 and len(spied) == calls
    body = json.dumps({"attempt": 1, "points": [{"key": "c", "step": 1, "value": 2.0}]}).encode()
    chunked = api.client.post(
        f"/api/v1/runs/{run['id']}/metrics",
        content=iter([body[:10], body[10:]]),
        headers=api.worker | {"content-type": "application/json"},
    )
    assert "content-length" not in chunked.request.headers
    assert chunked.status_code == 200 and len(spied) == calls
    assert _post(api, run["id"], [("loss", 1, 1.0)]).status_code == 200 and len(spied) == calls + 1
    assert len(_stored(api, run["id"])[0]) == 1000 + 1 + 1 + 3


def test_a_batch_spanning_many_chunks_is_written_in_a_thread(api: Api, spied: list[Any]) -> None:
    """Two points a million steps apart: the merge reads every chunk between them, which grows with
    the series, so it is not the event loop's work."""
    from app.series.chunks import CHUNK
    from app.series.metrics_sqlite import MAX_LOOP_CHUNKS

    run = api.sdk_run()
    _warm(api, run["id"])
    calls = len(spied)
    assert (
        _post(api, run["id"], [("loss", 0, 1.0), ("loss", MAX_LOOP_CHUNKS * CHUNK, 2.0)]).status_code == 200
    )
    assert len(spied) == calls + 1 and spied[-1] is None  # declined: the usual path wrote it
    near = _post(api, run["id"], [("loss", 1, 1.0), ("loss", (MAX_LOOP_CHUNKS - 1) * CHUNK, 2.0)])
    assert near.status_code == 200 and spied[-1] == 2
    series = api.client.get(
        "/api/v1/series", params={"run": [run["id"]], "key": "loss", "max_points": 10_000}, headers=api.user
    ).json()
    assert [p["x"] for p in series[0]["points"]] == [
        0,
        1,
        (MAX_LOOP_CHUNKS - 1) * CHUNK,
        MAX_LOOP_CHUNKS * CHUNK,
    ]


def test_a_driver_error_on_the_event_loop_writes_nothing(
    api: Api, spied: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failure half-way (after the rows, before the chunks) rolls the whole batch back."""
    run = api.sdk_run()
    _warm(api, run["id"])
    before = _stored(api, run["id"])

    def broken(conn: sqlite3.Connection, **_: Any) -> None:
        conn.execute(
            "INSERT INTO metrics (run_id, key, step, value, attempt) VALUES (?, 'x', 1, 1.0, 1)", (run["id"],)
        )
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(metrics_sqlite, "store_batch_sqlite", broken)
    with pytest.raises(Exception, match="disk I/O error"):
        _post(api, run["id"], [("loss", 1, 1.0)])
    assert _stored(api, run["id"]) == before
