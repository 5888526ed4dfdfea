"""Job lifecycle: claim, heartbeat, finish, cancel, logs (DESIGN.md §4)."""

from __future__ import annotations

from apikit import Api


def test_claim_when_queued_starts_attempt_one_with_lease(api: Api) -> None:
    job = api.job()
    response = api.claim(job["id"])
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["attempt"] == 1 and body["run"]["status"] == "running"
    assert body["spec"]["epochs"] == 20 and body["lease_until"]


def test_claim_when_already_running_returns_409_and_keeps_attempt(api: Api) -> None:
    job = api.job()
    assert api.claim(job["id"]).status_code == 200
    second = api.claim(job["id"])
    assert second.status_code == 409 and "running" in second.json()["message"]
    run = api.client.get(f"/api/v1/runs/{job['id']}", headers=api.user).json()
    assert run["attempt"] == 1


def test_claim_when_lease_expired_starts_next_attempt(api: Api) -> None:
    job = api.job()
    api.claim(job["id"])
    api.expire_lease(job["id"])
    response = api.claim(job["id"])
    assert response.status_code == 200 and response.json()["attempt"] == 2


def test_claim_when_attempts_exhausted_fails_run_with_reason(api: Api) -> None:
    job = api.job()
    for _ in range(3):
        assert api.claim(job["id"]).status_code == 200
        api.expire_lease(job["id"])
    response = api.claim(job["id"])
    assert response.status_code == 409 and "gave up after 3" in response.json()["message"]
    run = api.client.get(f"/api/v1/runs/{job['id']}", headers=api.user).json()
    assert run["status"] == "failed" and "max_attempts=3" in run["error"] and run["attempt"] == 3


def test_claim_when_sdk_run_returns_409(api: Api) -> None:
    run = api.sdk_run()
    response = api.claim(run["id"])
    assert response.status_code == 409 and "SDK" in response.json()["message"]


def test_claim_when_unknown_run_returns_404(api: Api) -> None:
    assert api.claim(987654).status_code == 404


def test_heartbeat_when_current_attempt_extends_lease(api: Api) -> None:
    job = api.job()
    lease = api.claim(job["id"]).json()["lease_until"]
    response = api.client.post(f"/api/v1/runs/{job['id']}/heartbeat", json={"attempt": 1}, headers=api.worker)
    assert response.status_code == 200
    assert response.json()["lease_until"] >= lease and response.json()["cancel_requested"] is False


def test_heartbeat_when_attempt_stale_returns_409(api: Api) -> None:
    job = api.job()
    api.claim(job["id"])
    api.expire_lease(job["id"])
    api.claim(job["id"])
    response = api.client.post(f"/api/v1/runs/{job['id']}/heartbeat", json={"attempt": 1}, headers=api.worker)
    assert response.status_code == 409 and "stale" in response.json()["message"]


def test_cancel_when_queued_cancels_at_once(api: Api) -> None:
    job = api.job()
    response = api.client.post(f"/api/v1/runs/{job['id']}/cancel", headers=api.user)
    assert response.status_code == 200 and response.json()["status"] == "cancelled"
    assert api.claim(job["id"]).status_code == 409


def test_cancel_when_running_sets_flag_seen_by_heartbeat_then_worker_ends_it(api: Api) -> None:
    job = api.job()
    api.claim(job["id"])
    response = api.client.post(f"/api/v1/runs/{job['id']}/cancel", headers=api.user)
    assert response.json()["status"] == "running" and response.json()["cancel_requested"] is True
    beat = api.client.post(f"/api/v1/runs/{job['id']}/heartbeat", json={"attempt": 1}, headers=api.worker)
    assert beat.json()["cancel_requested"] is True
    done = api.client.post(
        f"/api/v1/runs/{job['id']}/finish", json={"attempt": 1, "status": "cancelled"}, headers=api.worker
    )
    assert done.status_code == 200 and done.json()["status"] == "cancelled"


def test_cancel_when_finished_returns_409(api: Api) -> None:
    run = api.sdk_run()
    api.client.post(
        f"/api/v1/runs/{run['id']}/finish", json={"attempt": 1, "status": "succeeded"}, headers=api.user
    )
    response = api.client.post(f"/api/v1/runs/{run['id']}/cancel", headers=api.user)
    assert response.status_code == 409 and "succeeded" in response.json()["message"]


def test_cancel_when_worker_token_returns_403(api: Api) -> None:
    job = api.job()
    assert api.client.post(f"/api/v1/runs/{job['id']}/cancel", headers=api.worker).status_code == 403


def test_finish_when_replayed_is_idempotent_and_other_status_conflicts(api: Api) -> None:
    run = api.sdk_run()
    body = {"attempt": 1, "status": "failed", "error": "diverged"}
    first = api.client.post(f"/api/v1/runs/{run['id']}/finish", json=body, headers=api.user)
    again = api.client.post(f"/api/v1/runs/{run['id']}/finish", json=body, headers=api.user)
    assert first.status_code == again.status_code == 200
    assert again.json()["error"] == "diverged" and again.json()["finished_at"]
    other = api.client.post(
        f"/api/v1/runs/{run['id']}/finish", json={"attempt": 1, "status": "succeeded"}, headers=api.user
    )
    assert other.status_code == 409
    statuses = [p["status"] for _, kind, p in api.recorder.published if kind == "status"]
    assert statuses == ["running", "failed"]


def test_finish_when_queued_returns_409(api: Api) -> None:
    job = api.job()
    response = api.client.post(
        f"/api/v1/runs/{job['id']}/finish", json={"attempt": 1, "status": "succeeded"}, headers=api.worker
    )
    assert response.status_code == 409


def test_logs_when_posted_are_listed_in_order_and_published(api: Api) -> None:
    job = api.job()
    api.claim(job["id"])
    posted = api.client.post(
        f"/api/v1/runs/{job['id']}/logs", json={"attempt": 1, "lines": ["a", "b"]}, headers=api.worker
    )
    assert posted.status_code == 201
    first_id = posted.json()[0]["id"]
    listed = api.client.get(f"/api/v1/runs/{job['id']}/logs", headers=api.user).json()
    assert [line["line"] for line in listed] == ["a", "b"]
    after = api.client.get(f"/api/v1/runs/{job['id']}/logs", params={"after": first_id}, headers=api.user)
    assert [line["line"] for line in after.json()] == ["b"]
    logs = [p for _, kind, p in api.recorder.published if kind == "log"]
    assert [p["line"] for p in logs] == ["a", "b"] and logs[0]["event_id"] == first_id


def test_logs_when_attempt_stale_returns_409_and_writes_nothing(api: Api) -> None:
    job = api.job()
    api.claim(job["id"])
    api.expire_lease(job["id"])
    api.claim(job["id"])
    response = api.client.post(
        f"/api/v1/runs/{job['id']}/logs", json={"attempt": 1, "lines": ["late"]}, headers=api.worker
    )
    assert response.status_code == 409
    assert api.client.get(f"/api/v1/runs/{job['id']}/logs", headers=api.user).json() == []


def test_put_epoch_when_run_was_requeued_after_lease_loss_returns_409(api: Api) -> None:
    job = api.job()
    api.claim(job["id"])
    with api.db.transaction() as session:  # what the reaper does with an expired lease
        from sqlalchemy import update

        from app.models import Run

        session.execute(update(Run).where(Run.id == job["id"]).values(status="queued", lease_until=None))
    response = api.put_epoch(job["id"], 0, attempt=1)
    assert response.status_code == 409 and "queued again" in response.json()["message"]
    assert api.claim(job["id"]).json()["attempt"] == 2


def test_create_run_when_project_new_makes_caller_its_owner(api: Api) -> None:
    from sqlalchemy import select

    from app.models import Project, ProjectMember

    api.sdk_run(project="fresh")
    api.job(project="fresh")
    with api.db.session(write=False) as session:
        rows = session.execute(
            select(ProjectMember.role)
            .join(Project, Project.id == ProjectMember.project_id)
            .where(Project.name == "fresh")
        ).all()
    assert [row.role for row in rows] == ["owner"]


def test_claim_when_checkpoint_stored_reports_resume_epoch(api: Api) -> None:
    job = api.job()
    assert api.claim(job["id"]).json()["resume_epoch"] is None
    store = api.client.app.state.checkpoints  # type: ignore[attr-defined]
    store.write_bytes(job["id"], 1, 4, b"weights")
    api.expire_lease(job["id"])
    assert api.claim(job["id"]).json()["resume_epoch"] == 4
