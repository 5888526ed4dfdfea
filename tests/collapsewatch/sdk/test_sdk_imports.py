"""The SDK stays light: importing it, an offline run's scalars and ``collapsewatch sync`` import
neither torch nor the server's or the worker's dependencies."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
HEAVY = ("torch", "fastapi", "sqlalchemy", "celery", "app", "worker", "lightning")

SCRIPT = f"""
HEAVY = {HEAVY!r}
import sys
import collapsewatch as cw
import collapsewatch.sdk.sync
from collapsewatch.cli import main

with cw.init(project="p", config={{"lr": 0.1}}, mode="offline", dir=sys.argv[1]) as run:
    run.log({{"loss": 0.5}}, step=0)
    run.update_config({{"bs": 8}})
print(",".join(name for name in HEAVY if name in sys.modules))
"""


def test_sdk_import_and_offline_logging_load_no_heavy_module(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path / "runs")],
        cwd=tmp_path, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == ""


def test_sync_help_runs_without_the_server_side(tmp_path: Path) -> None:
    code = "import sys; from collapsewatch.cli import main; main(['sync', '--help'])"
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0 and "COLLAPSEWATCH_DIR" in done.stdout
