"""Drill: PostgreSQL restarts while a Celery worker trains a job and an SDK run is logging.

While the database is down the server answers 503 with Retry-After and a clear message (never a
500, never a crash); the worker's and the SDK's writes are retried; afterwards nothing is lost: the
job succeeds with every epoch once, and the SDK run has every epoch it logged.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx
import pytest
from drillkit import STATS, PrivatePostgres

from collapsewatch.sdk import Client, start_run
from tests.queue.harness import SLOW_SPEC, Stack, assert_invariants

pytestmark = pytest.mark.slow
SDK_EPOCHS = 40
OUTAGE_S = 3.0


def _log_epochs(client: Client, project: str, done: list[int]) -> None:
    run = start_run(client, project=project, name="sdk-drill")
    done.append(run.id)
    for epoch in range(1, SDK_EPOCHS + 1):
        run.log_epoch(epoch, {"val_acc": epoch / SDK_EPOCHS}, STATS)
        run.log({"loss": 1.0 / epoch}, step=epoch)
        time.sleep(0.1)
    assert run.finish(timeout=120), "the SDK could not deliver everything after the restart"


def test_postgres_restart_mid_run_answers_503_and_loses_nothing(
    tmp_path: Path, private_pg: PrivatePostgres
) -> None:
    url = private_pg.create_database("drill_restart")
    stack = Stack(tmp_path / "stack", database_url=url, secret_key="drill")
    try:
        stack.start_server()
        stack.start_worker()
        job = stack.submit(SLOW_SPEC | {"epochs": 20})[0]
        client = Client(
            stack.url, stack.user_token, spool_dir=tmp_path / "spool", backoff=0.2, backoff_max=1.0
        )
        sdk_ids: list[int] = []
        sdk = threading.Thread(target=_log_epochs, args=(client, "drill", sdk_ids))
        sdk.start()
        stack.wait_epoch(job["id"], 2)

        private_pg.stop("fast")
        down = httpx.get(f"{stack.url}/api/v1/runs/{job['id']}", headers=stack.http.headers, timeout=30)
        time.sleep(OUTAGE_S)
        private_pg.start()

        assert down.status_code == 503, down.text
        assert int(down.headers["Retry-After"]) > 0
        assert "database is unavailable" in down.json()["message"]
        sdk.join(timeout=180)
        assert not sdk.is_alive()
        run = stack.wait_status(job["id"], {"succeeded", "failed"}, timeout=240)
        assert_invariants(stack, run)
        sdk_run = stack.run(sdk_ids[0])
        assert sdk_run["status"] == "succeeded", sdk_run
        assert [e["epoch"] for e in stack.epochs(sdk_ids[0])] == list(range(1, SDK_EPOCHS + 1))
        assert stack.server is not None and stack.server.poll() is None
        access_log = (stack.root / "server.log").read_text(errors="replace")
        assert " 503 Service Unavailable" in access_log
        assert " 500 Internal Server Error" not in access_log
        client.close()
    finally:
        stack.close()
