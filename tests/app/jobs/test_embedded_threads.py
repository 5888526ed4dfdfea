"""The embedded worker's jobs run with one torch / OpenMP / BLAS thread unless the environment names
a number (small models on a machine shared with the server: more threads only contend)."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.jobs import embedded
from app.settings import Settings


def _settings(tmp_path: Path) -> Settings:
    return Settings(
        database_url=f"sqlite:///{tmp_path / 'cw.db'}",
        broker_url=f"sqla+sqlite:///{tmp_path / 'broker.db'}",
        artifact_dir=tmp_path / "artifacts",
        secret_key="test-secret",
        _env_file=None,  # type: ignore[call-arg]
    )


def test_worker_command_pins_jobs_to_one_thread_unless_the_environment_names_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(embedded, "ensure_worker_token", lambda settings: "cw_worker")
    for name in embedded.THREAD_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "3")
    argv, env = embedded.worker_command(settings=_settings(tmp_path), server_url="http://x", gpus="none")
    assert env["OMP_NUM_THREADS"] == "1" and env["MKL_NUM_THREADS"] == "1"
    assert env["OPENBLAS_NUM_THREADS"] == "3"  # the user's choice wins
    assert env["COLLAPSEWATCH_WORKER_TOKEN"] == "cw_worker" and "worker" in argv
