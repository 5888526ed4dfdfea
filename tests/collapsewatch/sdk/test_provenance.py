"""What ``cw.init`` records about where a run came from."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy  # noqa: F401 - imported, so its version is recorded

from collapsewatch.sdk import provenance


def test_command_line_hides_credential_like_values() -> None:
    argv = ["train.py", "--lr", "0.1", "--token", "s3cret", "--api-key=abc", "--password", "pw", "-v"]
    shown = provenance.command_line(argv)
    assert shown.endswith("train.py --lr 0.1 --token '***' '--api-key=***' --password '***' -v")
    assert "s3cret" not in shown and "abc" not in shown and "pw " not in shown


def test_git_state_outside_a_checkout_is_none(tmp_path: Path) -> None:
    assert provenance.git_state(str(tmp_path)) is None


def test_git_state_reports_commit_and_uncommitted_changes(tmp_path: Path) -> None:
    def git(*args: str) -> str:
        done = subprocess.run(
            ["git", "-c", "user.name=t", "-c", "user.email=t@t", *args],
            cwd=tmp_path, capture_output=True, text=True, check=True,
        )  # fmt: skip
        return done.stdout.strip()

    git("init", "-q")
    (tmp_path / "a.py").write_text("x = 1\n")
    git("add", "a.py")
    git("commit", "-qm", "a")
    clean = provenance.git_state(str(tmp_path))
    (tmp_path / "untracked.txt").write_text("not counted")
    assert clean is not None and provenance.git_state(str(tmp_path)) == clean
    (tmp_path / "a.py").write_text("x = 2\n")
    dirty = provenance.git_state(str(tmp_path))
    assert clean["commit"] == git("rev-parse", "HEAD") and clean["dirty"] is False
    assert dirty == {**clean, "dirty": True}


def test_collect_names_python_host_and_imported_packages() -> None:
    found = provenance.collect()
    assert found["python"] and found["host"] and found["command"]
    assert "numpy" in found["packages"] and "pytest" in found["packages"]
