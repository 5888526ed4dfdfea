"""Epoch records, scalar metric batches and exports through the v1 API."""

from __future__ import annotations

import csv
import io

from apikit import STATS, Api
from sqlalchemy import func, select

from app.models import Metric


def _epochs(api: Api, run_id: int) -> list[dict[str, object]]:
    response = api.client.get(f"/api/v1/runs/{run_id}/epochs", headers=api.user)
    assert response.status_code == 200
    return list(response.json())


def test_put_epoch_when_new_stores_record_and_publishes_it(api: Api) -> None:
    run = api.sdk_run()
    response = api.put_epoch(run["id"], 0)
    assert response.status_code == 200, response.text
    [stored] = _epochs(api, run["id"])
    assert stored["epoch"] == 0 and stored["stats"] == STATS and stored["metrics"] == {"val_acc": 0.5}
    [(run_id, _kind, payload)] = [e for e in api.recorder.published if e[1] == "epoch"]
    assert run_id == run["id"] and payload["epoch"] == 0 and payload["stats"] == STATS
    assert isinstance(payload["event_id"], int)


def test_put_epoch_when_replayed_by_same_attempt_keeps_first_record(api: Api) -> None:
    run = api.sdk_run()
    first = api.put_epoch(run["id"], 3, metrics={"val_acc": 0.1}).json()
    replay = api.put_epoch(run["id"], 3, metrics={"val_acc": 0.9})
    assert replay.status_code == 200 and replay.json() == first
    assert [e["metrics"] for e in _epochs(api, run["id"])] == [{"val_acc": 0.1}]
    assert len([e for e in api.recorder.published if e[1] == "epoch"]) == 1


def test_put_epoch_when_newer_attempt_supersedes_older_record(api: Api) -> None:
    job = api.job()
    api.claim(job["id"])
    api.put_epoch(job["id"], 0, attempt=1, metrics={"val_acc": 0.9})
    api.put_epoch(job["id"], 1, attempt=1, metrics={"val_acc": 0.8})
    api.expire_lease(job["id"])
    api.claim(job["id"])
    assert api.put_epoch(job["id"], 0, attempt=2, metrics={"val_acc": 0.3}).status_code == 200
    stored = {e["epoch"]: (e["attempt"], e["metrics"]) for e in _epochs(api, job["id"])}
    assert stored == {0: (2, {"val_acc": 0.3}), 1: (1, {"val_acc": 0.8})}
    run = api.client.get(f"/api/v1/runs/{job['id']}", headers=api.user).json()
    assert run["summary"]["best_val_acc"] == 0.8 and run["last_epoch"] == 1


def test_put_epoch_when_attempt_stale_returns_409_and_keeps_newer(api: Api) -> None:
    job = api.job()
    api.claim(job["id"])
    api.expire_lease(job["id"])
    api.claim(job["id"])
    api.put_epoch(job["id"], 0, attempt=2)
    stale = api.put_epoch(job["id"], 0, attempt=1, metrics={"val_acc": 0.0})
    assert stale.status_code == 409 and "stale" in stale.json()["message"]
    assert [e["attempt"] for e in _epochs(api, job["id"])] == [2]


def test_put_epoch_when_attempt_not_claimed_returns_409(api: Api) -> None:
    job = api.job()
    response = api.put_epoch(job["id"], 0, attempt=1)
    assert response.status_code == 409 and "not been claimed" in response.json()["message"]


def test_put_epoch_when_run_finished_returns_409(api: Api) -> None:
    run = api.sdk_run()
    api.client.post(
        f"/api/v1/runs/{run['id']}/finish", json={"attempt": 1, "status": "succeeded"}, headers=api.user
    )
    response = api.put_epoch(run["id"], 0)
    assert response.status_code == 409 and "succeeded" in response.json()["message"]
    assert _epochs(api, run["id"]) == []


def test_put_epoch_when_stats_absent_stores_metrics_only(api: Api) -> None:
    run = api.sdk_run()
    response = api.put_epoch(run["id"], 0, stats=None, metrics={"train_loss": None, "lr": 0.1})
    assert response.status_code == 200
    [stored] = _epochs(api, run["id"])
    assert stored["stats"] is None and stored["metrics"] == {"train_loss": None, "lr": 0.1}


def test_put_epoch_when_many_epochs_keeps_summary_of_last_and_best(api: Api) -> None:
    run = api.sdk_run()
    for epoch, acc, mean_sv in [(0, 0.2, 0.3), (2, 0.7, 0.5), (1, 0.9, 0.4)]:
        api.put_epoch(
            run["id"],
            epoch,
            metrics={"val_acc": acc, "recall_at_1": acc / 2},
            stats=STATS | {"mean_sv": mean_sv},
        )
    fetched = api.client.get(f"/api/v1/runs/{run['id']}", headers=api.user).json()
    assert fetched["last_epoch"] == 2
    summary = fetched["summary"]
    assert (
        summary["mean_sv"] == 0.5 and summary["best_val_acc"] == 0.9 and summary["best_recall_at_1"] == 0.45
    )
    assert summary["sv_position"] == STATS["sv_position"] and summary["dead_dims"] == 0


def test_list_epochs_when_since_and_limit_returns_window(api: Api) -> None:
    run = api.sdk_run()
    for epoch in range(5):
        api.put_epoch(run["id"], epoch)
    response = api.client.get(
        f"/api/v1/runs/{run['id']}/epochs", params={"since": 1, "limit": 2}, headers=api.user
    )
    assert [e["epoch"] for e in response.json()] == [1, 2]


def test_post_metrics_when_batch_upserts_by_key_and_step(api: Api) -> None:
    run = api.sdk_run()
    points = [{"key": "loss", "step": i, "value": 1.0 / (i + 1)} for i in range(1000)]
    first = api.client.post(
        f"/api/v1/runs/{run['id']}/metrics", json={"attempt": 1, "points": points}, headers=api.worker
    )
    assert first.status_code == 200 and first.json() == {"run": run["id"], "accepted": 1000}
    again = [{"key": "loss", "step": 0, "value": 7.0}, {"key": "loss", "step": 0, "value": 8.0}]
    api.client.post(
        f"/api/v1/runs/{run['id']}/metrics", json={"attempt": 1, "points": again}, headers=api.worker
    )
    with api.db.session(write=False) as session:
        assert session.scalar(select(func.count()).select_from(Metric)) == 1000
        value = session.scalar(select(Metric.value).where(Metric.run_id == run["id"], Metric.step == 0))
    assert value == 8.0


def test_export_csv_when_epochs_stored_has_one_row_per_epoch(api: Api) -> None:
    run = api.sdk_run()
    api.put_epoch(run["id"], 0, metrics={"val_acc": 0.5, "train_loss": None})
    api.put_epoch(run["id"], 1, stats=None, metrics={"lr": 0.1})
    response = api.client.get(f"/api/v1/runs/{run['id']}/epochs.csv", headers=api.user)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert [r["epoch"] for r in rows] == ["0", "1"]
    assert rows[0]["mean_sv"] == "0.5" and rows[0]["val_acc"] == "0.5" and rows[0]["train_loss"] == ""
    assert rows[1]["mean_sv"] == "" and rows[1]["lr"] == "0.1"


def test_export_json_when_requested_by_format_or_suffix_returns_run_and_epochs(api: Api) -> None:
    run = api.sdk_run()
    api.put_epoch(run["id"], 0)
    by_suffix = api.client.get(f"/api/v1/runs/{run['id']}/epochs.json", headers=api.user).json()
    by_query = api.client.get(f"/api/v1/runs/{run['id']}/epochs", params={"format": "json"}, headers=api.user)
    assert by_query.json() == by_suffix
    assert by_suffix["run"]["id"] == run["id"] and by_suffix["epochs"][0]["stats"] == STATS
    assert "attachment" in by_query.headers["content-disposition"]


def test_export_csv_when_run_unknown_returns_404(api: Api) -> None:
    assert api.client.get("/api/v1/runs/777/epochs.csv", headers=api.user).status_code == 404
