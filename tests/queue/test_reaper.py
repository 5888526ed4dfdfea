"""The reaper, the sweeper and the leader lock, on SQLite and PostgreSQL."""

from __future__ import annotations

import sqlite3
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from app.db import Database
from app.errors import Conflict
from app.jobs.maintenance import LeaderLock, tick
from app.jobs.queue import JobQueue
from app.jobs.reaper import cancel_unclaimed, reap_expired, sweep_queued
from app.models import Run, utcnow
from app.runs import lifecycle
from app.runs.artifacts import CheckpointStore
from app.runs.submit import ensure_project
from collapsewatch.contract import TASK_NAME


def add_run(database: Database, **values: Any) -> int:
    now = utcnow()
    fields: dict[str, Any] = {
        "kind": "job", "status": "queued", "attempt": 0, "max_attempts": 3, "config": {"device": "cpu"},
        "summary": {}, "tags": [], "created_at": now, "updated_at": now,
    } | values  # fmt: skip
    with database.transaction() as session:
        project = ensure_project(session=session, name="default", owner_id=None)
        run = Run(project=project, **fields)
        session.add(run)
        session.flush()
        return run.id


def get(database: Database, run_id: int) -> Run:
    with database.session(write=False) as session:
        run = session.get(Run, run_id)
        assert run is not None
        return run


def expired(seconds: float = 5) -> Any:
    return utcnow() - timedelta(seconds=seconds)


def test_reap_expired_lease_marks_lost_and_resends_when_attempts_remain(queue_db: Database) -> None:
    run_id = add_run(queue_db, status="running", attempt=1, lease_until=expired())
    with queue_db.transaction() as session:
        actions = reap_expired(session=session)
    assert [s.run_id for s in actions.send] == [run_id] and actions.send[0].device == "cpu"
    run = get(queue_db, run_id)
    assert run.status == "lost" and run.attempt == 1
    assert run.error is not None and "re-queued as attempt 2 of 3" in run.error
    with queue_db.transaction() as session:  # the re-sent message is claimable: attempt 2
        claim = lifecycle.claim(session=session, run_id=run_id, worker={}, lease_seconds=60)
    assert claim.run is not None and claim.run.attempt == 2 and claim.run.status == "running"


def test_reap_expired_lease_on_last_attempt_fails_with_reason(queue_db: Database) -> None:
    run_id = add_run(queue_db, status="running", attempt=3, max_attempts=3, lease_until=expired())
    with queue_db.transaction() as session:
        actions = reap_expired(session=session)
    assert actions.send == [] and actions.reaped == {run_id: "failed"}
    run = get(queue_db, run_id)
    assert run.status == "failed" and run.finished_at is not None
    assert run.error is not None and "attempt 3 of 3" in run.error and "no attempts left" in run.error


def test_reap_expired_lease_with_cancel_requested_ends_cancelled(queue_db: Database) -> None:
    run_id = add_run(queue_db, status="running", attempt=1, lease_until=expired(), cancel_requested=True)
    with queue_db.transaction() as session:
        actions = reap_expired(session=session)
    assert actions.send == [] and get(queue_db, run_id).status == "cancelled"


def test_reap_leaves_live_leases_leaseless_runs_and_finished_runs_alone(queue_db: Database) -> None:
    live = add_run(queue_db, status="running", attempt=1, lease_until=utcnow() + timedelta(seconds=30))
    sdk_live = add_run(
        queue_db, kind="sdk", status="running", attempt=1, lease_until=utcnow() + timedelta(seconds=30)
    )
    sdk_old = add_run(
        queue_db, kind="sdk", status="running", attempt=1, lease_until=None
    )  # pre-lease SDK run
    done = add_run(queue_db, status="succeeded", attempt=1, lease_until=expired())
    with queue_db.transaction() as session:
        actions = reap_expired(session=session)
    assert actions.reaped == {}
    statuses = [get(queue_db, i).status for i in (live, sdk_live, sdk_old, done)]
    assert statuses == ["running", "running", "running", "succeeded"]


def test_reap_expired_sdk_run_ends_crashed_with_how_to_resume(queue_db: Database) -> None:
    run_id = add_run(queue_db, kind="sdk", status="running", attempt=1, max_attempts=1, lease_until=expired())
    with queue_db.transaction() as session:
        actions = reap_expired(session=session)
    assert actions.reaped == {run_id: "crashed"} and actions.send == []
    assert [e.payload["status"] for e in actions.events] == ["crashed"]
    run = get(queue_db, run_id)
    assert run.status == "crashed" and run.finished_at is not None and run.lease_until is None
    assert run.error is not None and f"cw.init(id={run_id}, resume=True)" in run.error


def test_heartbeat_of_the_same_attempt_revives_a_crashed_sdk_run(queue_db: Database) -> None:
    run_id = add_run(queue_db, kind="sdk", status="running", attempt=1, max_attempts=1, lease_until=expired())
    with queue_db.transaction() as session:
        reap_expired(session=session)
    with queue_db.transaction() as session:  # the process was alive, only cut off from the server
        run, written = lifecycle.heartbeat(session=session, run_id=run_id, attempt=1, lease_seconds=60)
    assert run.status == "running" and run.finished_at is None and run.error is None
    assert [e.payload["status"] for e in written.events] == ["running"]
    with queue_db.transaction() as session:  # a second heartbeat is just a heartbeat
        _run, again = lifecycle.heartbeat(session=session, run_id=run_id, attempt=1, lease_seconds=60)
    assert again.events == []


def test_resume_crashed_sdk_run_starts_a_new_attempt_and_fences_the_old_one(queue_db: Database) -> None:
    run_id = add_run(queue_db, kind="sdk", status="running", attempt=1, max_attempts=1, lease_until=expired())
    with queue_db.transaction() as session:
        reap_expired(session=session)
    with queue_db.transaction() as session:
        run, written = lifecycle.resume(session=session, run_id=run_id, lease_seconds=60)
    assert (run.status, run.attempt, run.max_attempts) == ("running", 2, 2)
    assert run.lease_until is not None and run.finished_at is None
    assert [e.payload["attempt"] for e in written.events] == [2]
    with queue_db.transaction() as session, pytest.raises(Conflict, match="attempt 1 is stale"):
        lifecycle.heartbeat(session=session, run_id=run_id, attempt=1, lease_seconds=60)


def test_resume_refuses_a_job(queue_db: Database) -> None:
    run_id = add_run(queue_db, status="failed", attempt=3)
    with queue_db.transaction() as session, pytest.raises(Conflict, match="only SDK runs are resumed"):
        lifecycle.resume(session=session, run_id=run_id, lease_seconds=60)


def test_reap_twice_changes_a_run_once(queue_db: Database) -> None:
    add_run(queue_db, status="running", attempt=1, lease_until=expired())
    with queue_db.transaction() as session:
        first = reap_expired(session=session)
    with queue_db.transaction() as session:
        second = reap_expired(session=session)
    assert len(first.events) == 1 and second.reaped == {} and second.send == []


def test_heartbeat_after_reap_revives_the_same_attempt(queue_db: Database) -> None:
    run_id = add_run(queue_db, status="running", attempt=1, lease_until=expired())
    with queue_db.transaction() as session:
        reap_expired(session=session)
    with queue_db.transaction() as session:  # a slow worker comes back before anyone claimed
        lifecycle.heartbeat(session=session, run_id=run_id, attempt=1, lease_seconds=60)
    with queue_db.transaction() as session:  # so the re-sent message finds nothing to claim
        claim = lifecycle.claim(session=session, run_id=run_id, worker={}, lease_seconds=60)
    assert claim.run is None and get(queue_db, run_id).attempt == 1


def test_sweep_resends_long_queued_runs_once_per_window(queue_db: Database) -> None:
    old = utcnow() - timedelta(minutes=5)
    stuck = add_run(queue_db, updated_at=old)
    lost = add_run(queue_db, status="lost", attempt=1, lease_until=expired(), updated_at=old)
    add_run(queue_db)  # just submitted: its message is probably on its way
    add_run(queue_db, updated_at=old, cancel_requested=True)
    add_run(queue_db, status="lost", attempt=3, max_attempts=3, updated_at=old)  # the claim fails it
    with queue_db.transaction() as session:
        first = sweep_queued(session=session, older_than=timedelta(minutes=1))
    with queue_db.transaction() as session:
        again = sweep_queued(session=session, older_than=timedelta(minutes=1))
    assert sorted(s.run_id for s in first.send) == [stuck, lost]
    assert again.send == []


def test_cancel_unclaimed_ends_lost_runs_whose_cancel_was_requested(queue_db: Database) -> None:
    run_id = add_run(queue_db, status="lost", attempt=1, lease_until=expired(), cancel_requested=True)
    with queue_db.transaction() as session:
        actions = cancel_unclaimed(session=session)
    assert actions.reaped == {run_id: "cancelled"} and get(queue_db, run_id).status == "cancelled"


def test_leader_lock_admits_one_holder_at_a_time(queue_db: Database) -> None:
    url = str(queue_db.engine.url.render_as_string(hide_password=False))
    other = Database(_settings(url))
    first, second = LeaderLock(queue_db, url), LeaderLock(other, url)
    try:
        assert first.acquire() and first.acquire()  # re-entrant for its holder
        assert not second.acquire()
        first.release()
        assert second.acquire()
    finally:
        first.release()
        second.release()
        other.dispose()


def _settings(url: str) -> Any:
    from app.settings import Settings

    return Settings(database_url=url, _env_file=None)  # type: ignore[call-arg]


def test_tick_sends_reaped_runs_and_removes_checkpoints_of_deleted_runs(
    queue_db: Database, tmp_path: Path
) -> None:
    broker = tmp_path / "broker.db"
    queue = JobQueue(f"sqla+sqlite:///{broker}", queue_prefix="tick-")
    store = CheckpointStore(tmp_path / "artifacts", max_bytes=1 << 20)
    run_id = add_run(queue_db, status="running", attempt=1, lease_until=expired())
    store.write_bytes(run_id, 1, 1, b"kept")
    store.write_bytes(run_id + 1000, 1, 1, b"orphan")  # a run that no longer exists
    published: list[tuple[int, str, dict[str, Any]]] = []
    actions = tick(
        database=queue_db, queue=queue, store=store, sweep_after=timedelta(minutes=1),
        publish=lambda *event: published.append(event),
    )  # fmt: skip
    queue.close()
    assert actions.reaped == {run_id: "lost"}
    assert [(r, t, p["status"]) for r, t, p in published] == [(run_id, "status", "lost")]
    with sqlite3.connect(broker) as conn:
        rows = conn.execute(
            "SELECT q.name, m.payload FROM kombu_message m JOIN kombu_queue q ON q.id = m.queue_id"
        ).fetchall()
    assert len(rows) == 1 and rows[0][0] == "tick-cpu" and f'"{TASK_NAME}"' in rows[0][1]
    assert store.stored_run_ids() == [run_id]


def test_sweep_window_grows_with_the_wait(queue_db: Database) -> None:
    now = utcnow()
    long_ago = now - timedelta(hours=2)
    recent_send = add_run(queue_db, created_at=long_ago, updated_at=now - timedelta(minutes=5))
    due = add_run(queue_db, created_at=long_ago, updated_at=now - timedelta(minutes=11))
    with queue_db.transaction() as session:
        actions = sweep_queued(session=session, older_than=timedelta(minutes=1), now=now)
    assert [s.run_id for s in actions.send] == [due]  # window: min(2 h / 4, 10 x 1 min) = 10 min
    assert get(queue_db, recent_send).updated_at < now
