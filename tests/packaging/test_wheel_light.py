"""``pip install collapsewatch`` (no extra) from the built wheel into a fresh environment is the light
library: numpy, httpx, pydantic and tqdm (and theirs). Its console entry answers ``--version``, names
the extra a server or worker command needs, and the README's SDK example logs to a server (started
from the repository's environment) without ever importing fastapi, sqlalchemy, celery or torch."""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.app.cli.clikit import ROOT, clean_env, free_port, run, start, stop, wait_healthy
from tests.packaging.wheelkit import LOCK, installed, make_venv

pytestmark = pytest.mark.slow

# numpy, httpx, pydantic, tqdm and what they pull in (pip itself aside).
LIGHT = {
    "collapsewatch", "numpy", "httpx", "httpcore", "h11", "anyio", "idna", "certifi", "sniffio", "pydantic",
    "pydantic-core", "annotated-types", "typing-extensions", "typing-inspection", "tqdm", "threadpoolctl",
    "pip", "setuptools",
}  # fmt: skip
HEAVY = ("fastapi", "sqlalchemy", "celery", "torch")


@pytest.fixture(scope="module")
def venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_venv(tmp_path_factory.mktemp("venv-light") / "venv", [str(wheel), "-c", str(LOCK)])


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """A server (no worker) from the repository's environment: URL and a user token."""
    root = tmp_path_factory.mktemp("light-server")
    env = clean_env({"COLLAPSEWATCH_DATA_DIR": str(root / "data")})
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = root / "up.log"
    cli = [sys.executable, "-m", "collapsewatch.cli"]
    proc = start([*cli, "up", "--no-worker", "--port", str(port)], env=env, cwd=root, log=log)
    try:
        wait_healthy(url, proc, log)
        token = run([*cli, "token", "create"], env=env, cwd=root).stdout.strip()
        yield url, token
    finally:
        stop(proc)


def test_light_install_when_done_holds_only_the_sdk_dependencies(venv: Path) -> None:
    found = installed(venv)
    assert found <= LIGHT, f"the light install pulled in {sorted(found - LIGHT)}"
    assert {"collapsewatch", "numpy", "httpx", "pydantic", "tqdm", "threadpoolctl"} <= found


def test_light_install_console_entry_answers_version_and_names_the_missing_extra(
    venv: Path, tmp_path: Path
) -> None:
    cw = str(venv / "bin" / "collapsewatch")
    env = clean_env(pythonpath=None)
    version = run([cw, "--version"], env=env, cwd=tmp_path)
    assert version.returncode == 0 and re.fullmatch(r"collapsewatch \d+\.\d+\.\d+\S*\n", version.stdout)
    for command, extra in (
        ("up", "server"),
        ("db", "server"),
        ("token", "server"),
        ("worker", "worker"),
        ("train", "worker"),
    ):
        done = run([cw, command], env=env, cwd=tmp_path)
        assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
        assert (
            f"pip install 'collapsewatch[{extra}]'" in done.stderr
            and len(done.stderr.strip().splitlines()) == 1
        )
    sync = run([cw, "sync", "--help"], env=env, cwd=tmp_path)  # the light library's own command
    assert "pip install 'collapsewatch[" not in sync.stdout + sync.stderr and "Traceback" not in sync.stderr


def readme_sdk_example() -> str:
    """The README's SDK example: its first Python block that starts a run and logs embeddings."""
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(encoding="utf-8"), re.S)
    return next(block for block in blocks if "cw.init(" in block and "log_embeddings" in block)


def test_light_install_runs_the_readme_sdk_example_without_server_or_torch_imports(
    venv: Path, server: tuple[str, str], tmp_path: Path
) -> None:
    url, token = server
    example = readme_sdk_example()
    assert len([line for line in example.splitlines() if line.strip() and not line.startswith("#")]) <= 8
    (tmp_path / "example.py").write_text(example)
    (tmp_path / "check.py").write_text(
        "import runpy, sys\n"
        "runpy.run_path('example.py', run_name='__main__')\n"
        f"print('HEAVY', sorted({{m.split('.')[0] for m in sys.modules}} & {set(HEAVY)!r}))\n"
    )
    env = clean_env({"COLLAPSEWATCH_URL": url, "COLLAPSEWATCH_TOKEN": token}, pythonpath=None)
    done = run([str(venv / "bin" / "python"), "check.py"], env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "HEAVY []" in done.stdout
    headers = {"Authorization": f"Bearer {token}"}
    [created] = httpx.get(f"{url}/api/v1/runs", params={"kind": "sdk", "limit": 5}, headers=headers).json()
    assert created["status"] == "succeeded"
    epochs = httpx.get(f"{url}/api/v1/runs/{created['id']}/epochs", headers=headers).json()
    assert len(epochs) >= 2 and all(
        e["stats"]["sv_lower"] <= e["stats"]["mean_sv"] <= e["stats"]["sv_upper"] + 1e-9 for e in epochs
    )
