"""The API rate limit on a real server: a script that logs flat out is slowed down by 429s, and the
SDK waits them out, so every write still lands once."""

from __future__ import annotations

from pathlib import Path

from seckit import STATS

from collapsewatch.sdk import Client, start_run
from tests.queue.harness import Stack

EPOCHS = 25


def test_sdk_logging_flat_out_is_throttled_and_loses_nothing(tmp_path: Path) -> None:
    stack = Stack(
        tmp_path / "stack", secret_key="rate", api_rate_limit_per_second="10", api_rate_limit_burst="5"
    )
    try:
        stack.start_server()
        token = stack.cli("token", "create")  # its own bucket: the checks below use the stack's token
        client = Client(stack.url, token, spool_dir=tmp_path / "spool", backoff=0.2, backoff_max=2.0)
        run = start_run(client, project="rate", name="flat-out")
        for epoch in range(1, EPOCHS + 1):
            run.log_epoch(epoch, {"val_acc": epoch / EPOCHS}, STATS)
        assert run.finish(timeout=120), "the SDK did not deliver everything"
        client.close()

        assert [e["epoch"] for e in stack.epochs(run.id)] == list(range(1, EPOCHS + 1))
        assert stack.run(run.id)["status"] == "succeeded"
        access_log = (stack.root / "server.log").read_text(errors="replace")
        assert " 429 Too Many Requests" in access_log  # the limit was reached, and waited out
        assert " 500 Internal Server Error" not in access_log
    finally:
        stack.close()
