"""Queue names, task names, GPU pinning and the worker command's argument handling."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from app.jobs import queue as server_queue
from tests.queue.harness import RedisServer
from worker import celery_app, launch, runner, tasks
from worker import settings as worker_settings


@pytest.mark.parametrize(
    ("device", "queue"),
    [("cpu", "cpu"), ("cuda", "gpu"), ("cuda:1", "gpu"), ("auto", "default"), (None, "default")],
)
def test_device_class_routes_jobs_by_device(device: str | None, queue: str) -> None:
    assert server_queue.JobQueue("memory://", queue_prefix="p-").queue_name(device) == f"p-{queue}"


def test_server_and_worker_agree_on_task_and_queue_names() -> None:
    assert server_queue.TASK_NAME == worker_settings.TASK_NAME == "train_run"  # DESIGN.md §2
    assert tasks.train_run.name == worker_settings.TASK_NAME
    assert worker_settings.TASK_NAME in celery_app.app.tasks
    assert celery_app.worker_queues("p-", use_gpus=True) == ["p-gpu", "p-default"]
    assert celery_app.worker_queues("p-", use_gpus=False) == ["p-cpu", "p-default"]


def test_worker_celery_app_acks_early_and_prefetches_one() -> None:
    app = celery_app.create_celery("redis://127.0.0.1:1/0", queue_prefix="x-")
    assert app.conf.task_acks_late is False and app.conf.worker_prefetch_multiplier == 1
    assert app.conf.worker_disable_prefetch is True and app.conf.task_default_queue == "x-default"
    sqlite = celery_app.create_celery("sqla+sqlite:///tmp/b.db", queue_prefix="")
    assert sqlite.conf.worker_enable_remote_control is False  # the SQL transport has no fanout


@pytest.mark.parametrize(
    ("value", "parsed"), [("none", []), ("", []), ("auto", "auto"), ("0", ["0"]), ("0, 2", ["0", "2"])]
)
def test_parse_gpus_accepts_none_auto_and_indices(value: str, parsed: object) -> None:
    assert worker_settings.parse_gpus(value) == parsed


@pytest.mark.parametrize("value", ["0,0", "gpu0", "-1", "0;1"])
def test_parse_gpus_rejects_bad_lists_naming_the_field(value: str) -> None:
    with pytest.raises(ValueError, match="gpus"):
        worker_settings.parse_gpus(value)


def test_each_pool_child_is_pinned_to_one_gpu() -> None:
    assert [celery_app.pin_child_device(i, "3,5") for i in range(4)] == ["3", "5", "3", "5"]
    assert celery_app.pin_child_device(0, "") == ""  # CPU worker: GPUs hidden
    assert celery_app.pin_child_device(0, None) is None  # not started by `collapsewatch worker`


def test_celery_command_runs_one_child_per_gpu() -> None:
    argv, env = launch.celery_command(
        gpus=["0", "1"], concurrency=8, queues=["gpu"], name="n", loglevel="INFO"
    )
    assert argv[argv.index("--concurrency") + 1] == "2" and env == {worker_settings.GPU_SLOTS_ENV: "0,1"}
    argv, env = launch.celery_command(gpus=[], concurrency=3, queues=["cpu"], name="n", loglevel="INFO")
    assert argv[argv.index("--concurrency") + 1] == "3" and env == {worker_settings.GPU_SLOTS_ENV: ""}


@pytest.mark.parametrize(
    ("slots", "spec_device", "device"),
    [("0", "auto", "cuda:0"), ("0", "cuda:3", "cuda:0"), ("0", "cpu", "cpu"), ("", "auto", "cpu"),
     ("", "cuda", None), (None, "cuda:1", None)],
)  # fmt: skip
def test_training_device_follows_the_pinning(
    monkeypatch: pytest.MonkeyPatch, slots: str | None, spec_device: str, device: str | None
) -> None:
    if slots is None:
        monkeypatch.delenv(worker_settings.GPU_SLOTS_ENV, raising=False)
    else:
        monkeypatch.setenv(worker_settings.GPU_SLOTS_ENV, slots)
    assert runner.training_device(spec_device) == device


def _args(**values: object) -> argparse.Namespace:
    defaults = dict(
        gpus=None,
        concurrency=None,
        queues=None,
        server=None,
        token=None,
        broker=None,
        name=None,
        loglevel=None,
    )
    return argparse.Namespace(**(defaults | values))


def test_worker_command_without_token_says_how_to_get_one(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("WORKER_TOKEN", raising=False)
    monkeypatch.chdir("/")  # no .env
    assert launch.worker(_args()) == 2
    assert "WORKER_TOKEN" in capsys.readouterr().err


def test_worker_command_rejects_unknown_queue_and_bad_gpus(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("WORKER_TOKEN", "cw_x")
    assert launch.worker(_args(queues="cpu,fast")) == 2
    assert "--queues" in capsys.readouterr().err
    assert launch.worker(_args(gpus="zero")) == 2
    assert "gpus" in capsys.readouterr().err


def test_worker_parent_imports_neither_torch_nor_the_server() -> None:
    import subprocess
    import sys

    code = (
        "import sys, worker.celery_app, worker.tasks, worker.launch\n"
        "worker.celery_app.app.loader.import_default_modules()\n"
        "bad = sorted(m for m in ('torch', 'fastapi', 'app.db', 'app.main') if m in sys.modules)\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "", f"the Celery parent imported {out.stdout.strip()}"


@pytest.mark.redis
def test_send_while_broker_down_fails_then_cools_down_then_recovers(tmp_path: Path) -> None:
    redis = RedisServer(tmp_path)  # its port is free: nothing listens yet
    queue = server_queue.JobQueue(redis.url, queue_prefix="cool-", cooldown=3600)
    try:
        assert queue.send(1, "cpu") is False  # refused: the run stays queued for the sweeper
        redis.start()
        assert queue.send(2, "cpu") is False  # within the cooldown: not even tried
        queue.cooldown = 0
        assert queue.send(3, "cpu") is True
        import redis as redis_client

        assert redis_client.Redis.from_url(redis.url).llen("cool-cpu") == 1
    finally:
        queue.close()
        redis.kill()
