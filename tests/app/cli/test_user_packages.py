"""A user's project with its own ``app/`` and ``worker/`` packages, first on ``sys.path`` (the working
directory and ``PYTHONPATH``): the SDK imports beside them, and the server's and worker's commands still
run collapsewatch's own packages (collapsewatch.cli.own_packages_first). tests/packaging does the same
with the installed wheel, up to training a job."""

from __future__ import annotations

import sys
from pathlib import Path

from tests.app.cli.clikit import ROOT, clean_env, cli, run

USER_PACKAGES = {
    "app/__init__.py": "OWNER = 'the user'\n",
    "app/migrate.py": 'raise ImportError("the user\'s app.migrate was imported")\n',
    "worker/__init__.py": "OWNER = 'the user'\n",
    "worker/cli.py": 'raise ImportError("the user\'s worker.cli was imported")\n',
}


def _project(tmp_path: Path) -> Path:
    project = tmp_path / "project"
    for name, text in USER_PACKAGES.items():
        (project / name).parent.mkdir(parents=True, exist_ok=True)
        (project / name).write_text(text)
    return project


def test_user_packages_when_first_on_path_leave_the_commands_ours(tmp_path: Path) -> None:
    project = _project(tmp_path)
    env = clean_env(pythonpath=f"{project}:{ROOT}")
    upgraded = cli("db", "upgrade", "--data", str(tmp_path / "data"), env=env, cwd=project)
    assert upgraded.returncode == 0, upgraded.stderr
    assert (tmp_path / "data" / "collapsewatch.db").stat().st_size > 0
    example = cli("train", "--example", env=env, cwd=project)
    assert example.returncode == 0 and "dataset: digits" in example.stdout, example.stderr


def test_user_packages_when_first_on_path_stay_the_users_beside_the_sdk(tmp_path: Path) -> None:
    project = _project(tmp_path)
    code = (
        "import app, worker, collapsewatch as cw\n"
        "assert app.OWNER == worker.OWNER == 'the user'\n"
        "print(cw.__version__, callable(cw.init))\n"
    )
    done = run([sys.executable, "-c", code], env=clean_env(pythonpath=f"{project}:{ROOT}"), cwd=project)
    assert done.returncode == 0 and done.stdout.strip().endswith("True"), done.stderr
