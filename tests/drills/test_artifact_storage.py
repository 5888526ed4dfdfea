"""Drill: the artifact directory is full (a tiny tmpfs) or unusable, while a job saves checkpoints.

The checkpoint upload gets 507 with a message saying what to do; the worker does not retry it and
ends the run ``failed`` with that message (a clear error on the run, no silent re-queue loop); the
server stays up and keeps serving the API.
"""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.queue.harness import TINY_SPEC, Stack

pytestmark = pytest.mark.slow


@pytest.fixture
def full_artifact_dir(tmp_path: Path) -> Iterator[Path]:
    """A 64 KiB tmpfs filled to the brim; where mounting is not allowed, a directory whose
    ``checkpoints`` entry is a file (every checkpoint write fails with an OSError there too)."""
    path = tmp_path / "artifacts"
    path.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(path)], capture_output=True
    ).returncode == 0  # fmt: skip
    try:
        if mounted:
            _fill(path / "filler")
        else:
            (path / "checkpoints").write_text("not a directory")
        yield path
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(path)], capture_output=True)


def _fill(path: Path) -> None:
    """Write until the file system is full (ENOSPC)."""
    with contextlib.suppress(OSError), open(path, "wb", buffering=0) as handle:
        while True:
            handle.write(b"\0" * 4096)


def test_full_artifact_dir_fails_the_run_clearly_and_server_stays_up(
    tmp_path: Path, full_artifact_dir: Path
) -> None:
    stack = Stack(tmp_path / "stack", artifact_dir=full_artifact_dir, secret_key="drill")
    try:
        stack.start_server()
        stack.start_worker()
        run = stack.submit(TINY_SPEC)[0]
        ended = stack.wait_status(run["id"], {"failed", "succeeded"}, timeout=180)

        assert ended["status"] == "failed", ended
        assert ended["attempt"] == 1, "a storage error is not worth a retry of the whole run"
        assert "507" in ended["error"] and "could not store the checkpoint" in ended["error"], ended["error"]
        assert "ARTIFACT_DIR" in ended["error"]
        assert stack.server is not None and stack.server.poll() is None
        sdk = stack.http.post("/api/v1/runs", json={"project": "after"})
        assert sdk.status_code == 201, sdk.text
        put = stack.http.put(f"/api/v1/runs/{sdk.json()['id']}/epochs/1", json={"attempt": 1, "metrics": {}})
        assert put.status_code == 200, put.text
    finally:
        stack.close()
