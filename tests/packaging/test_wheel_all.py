"""``pip install 'collapsewatch[all]'`` from the built wheel into a fresh environment, used from
directories that are not the repository:

* from an empty directory: ``db upgrade``, ``token create``, ``user create``, then ``collapsewatch up``
  migrates, serves every page with its styles, scripts and plotly, and trains a submitted job to
  ``succeeded``; ``demo`` submits its experiments;
* from a user's project with its own ``app/`` and ``worker/`` packages first on ``sys.path``: a training
  script imports both of its own and logs with the SDK, ``collapsewatch up`` serves and a separate
  ``collapsewatch worker`` trains a job.
"""

from __future__ import annotations

import re
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.app.cli.clikit import clean_env, free_port, run, start, stop, wait_healthy, wait_until
from tests.packaging.wheelkit import LOCK, TORCH, make_venv

pytestmark = pytest.mark.slow

JOB = {
    "dataset": "digits", "model": "mlp", "embedding_dim": 8, "epochs": 2, "probe_size": 64,
    "batch_size": 256, "device": "cpu",
}  # fmt: skip
ASSET = re.compile(r'<(?:script|link)\b[^>]*?\b(?:src|href)="(/static/[^"?]+)(?:\?[^"]*)?"')


@pytest.fixture(scope="module")
def venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("venv-all") / "venv"
    return make_venv(path, [TORCH], [f"{wheel}[all]", "-c", str(LOCK)])


class Server:
    """``collapsewatch up`` of the installed wheel, with the admin's API token."""

    def __init__(self, url: str, token: str) -> None:
        self.url, self.token = url, token
        self.http = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=60)

    def submit(self, spec: dict[str, Any]) -> int:
        response = self.http.post("/api/v1/jobs", json={"spec": spec})
        assert response.status_code == 201, response.text
        return int(response.json()[0]["id"])

    def wait_ended(self, run_id: int, timeout: float = 300) -> dict[str, Any]:
        def ended() -> dict[str, Any] | None:
            run = self.http.get(f"/api/v1/runs/{run_id}").json()
            return run if run["status"] in ("succeeded", "failed", "cancelled") else None

        return wait_until(ended, timeout=timeout, what=f"run {run_id} to end")


@pytest.fixture
def empty_dir(tmp_path: Path) -> Path:
    path = tmp_path / "empty"
    path.mkdir()
    return path


@contextmanager
def collapsewatch_up(venv: Path, *args: str, cwd: Path, env: dict[str, str], log: Path) -> Iterator[Server]:
    """``collapsewatch up ARGS`` started in ``cwd``, and a token made by ``token create`` there."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    cw = str(venv / "bin" / "collapsewatch")
    proc = start([cw, "up", "--port", str(port), *args], env=env, cwd=cwd, log=log)
    try:
        wait_healthy(url, proc, log)
        data = args[args.index("--data") : args.index("--data") + 2] if "--data" in args else ()
        token = run([cw, "token", "create", *data], env=env, cwd=cwd)
        assert token.returncode == 0, token.stderr
        yield Server(url, token.stdout.strip())
    finally:
        assert stop(proc) == 0, log.read_text()[-3000:]


def test_installed_when_used_from_an_empty_directory_migrates_serves_every_page_and_trains(
    venv: Path, empty_dir: Path, tmp_path: Path
) -> None:
    env = clean_env(pythonpath=None)
    cw = str(venv / "bin" / "collapsewatch")
    assert run([cw, "--version"], env=env, cwd=empty_dir).stdout.startswith("collapsewatch ")
    upgraded = run([cw, "db", "upgrade", "--data", "by-hand"], env=env, cwd=empty_dir)
    assert upgraded.returncode == 0 and (empty_dir / "by-hand" / "collapsewatch.db").stat().st_size > 0, (
        upgraded.stderr
    )
    user = run(
        [cw, "user", "create", "ada@lab.org", "--password-stdin"],
        env=env,
        cwd=empty_dir,
        stdin="a long passphrase 1\n",
    )
    assert user.returncode == 0 and user.stdout.strip().isdigit(), user.stderr

    with collapsewatch_up(venv, "--gpus", "none", cwd=empty_dir, env=env, log=tmp_path / "up.log") as server:
        run_id = server.submit(JOB)
        done = server.wait_ended(run_id)
        assert done["status"] == "succeeded", done
        epochs = server.http.get(f"/api/v1/runs/{run_id}/epochs").json()
        assert [e["epoch"] for e in epochs] == [1, 2] and epochs[-1]["stats"]["mean_sv"] > 0
        report = server.http.post(
            "/api/v1/reports", json={"project": "default", "title": "wheel", "query": f"run={run_id}"}
        ).json()
        share = server.http.post(f"/api/v1/reports/{report['id']}/shares", json={}).json()
        pages = [
            "/runs", f"/runs/{run_id}", "/jobs/new", f"/compare?run={run_id}", "/account", "/projects",
            "/projects/default", f"/reports/{report['id']}", share["url"].removeprefix(server.url),
        ]  # fmt: skip
        assets: set[str] = set()
        for page in pages:
            response = httpx.get(f"{server.url}{page}", timeout=60)  # the local admin: no sign-in
            assert response.status_code == 200 and "<html" in response.text, (page, response.status_code)
            assets |= set(ASSET.findall(response.text))
        assert {"/static/plotly.min.js", "/static/cw.css", "/static/run.js", "/static/charts.js"} <= assets
        for asset in sorted(assets):
            response = httpx.get(f"{server.url}{asset}", timeout=60)
            kind = "css" if asset.endswith(".css") else "javascript"
            assert response.status_code == 200 and kind in response.headers["content-type"], asset
            assert len(response.content) > 200 and "max-age" in response.headers["cache-control"], asset
        export = httpx.get(f"{server.url}/reports/{report['id']}/export.html", timeout=60)
        assert export.status_code == 200 and "Plotly" in export.text  # plotly.js inlined from the package
        demo = run(
            [
                cw,
                "demo",
                "--url",
                server.url,
                "--token",
                server.token,
                "--no-wait",
                "--quick",
            ],
            env=env,
            cwd=empty_dir,
        )
        assert demo.returncode == 0 and demo.stdout.count("/compare?sweep=") == 4, demo.stderr
    left = {path.name for path in empty_dir.iterdir()}  # the embedded set-up's files, nothing else
    assert {"artifacts", "by-hand", "collapsewatch-broker.db", "collapsewatch.db"} <= left
    assert all(name.startswith(("artifacts", "by-hand", "collapsewatch")) for name in left), left


USER_APP = {
    "app/__init__.py": "OWNER = 'the user'\n",
    "app/main.py": "app = 'the user\\'s own app.main, not an ASGI app'\n",
    "worker/__init__.py": "OWNER = 'the user'\n",
    "worker/celery_app.py": "raise ImportError('the user\\'s worker.celery_app was imported')\n",
    "train.py": textwrap.dedent(
        """\
        import sys

        import numpy as np

        import app
        import worker
        import collapsewatch as cw

        assert app.OWNER == worker.OWNER == "the user"  # the project's own packages come first
        rng = np.random.default_rng(0)
        with cw.init(project="user-project", config={"lr": 0.1}) as run:
            for epoch in range(1, 3):
                run.log({"loss": 1.0 / epoch}, step=epoch)
                embeddings = rng.normal(size=(128, 16))
                run.log_embeddings(embeddings, epoch=epoch, metrics={"val_acc": 0.5 + epoch / 10})
        print("RUN", run.id)
        server_side = {"fastapi", "sqlalchemy", "celery"}
        print("IMPORTED", sorted({m.split(".")[0] for m in sys.modules} & server_side))
        """
    ),
}


def test_installed_when_user_project_has_its_own_app_and_worker_runs_sdk_up_and_worker(
    venv: Path, tmp_path: Path
) -> None:
    project = tmp_path / "my-project"
    for name, text in USER_APP.items():
        (project / name).parent.mkdir(parents=True, exist_ok=True)
        (project / name).write_text(text)
    env = clean_env(pythonpath=str(project))  # the project's packages first on sys.path, cwd too
    data = tmp_path / "data"
    with collapsewatch_up(
        venv, "--no-worker", "--data", str(data), cwd=project, env=env, log=tmp_path / "up.log"
    ) as server:
        assert "collapsewatch" in httpx.get(f"{server.url}/runs", timeout=60).text
        script = run(
            [str(venv / "bin" / "python"), "train.py"],
            env=env | {"COLLAPSEWATCH_URL": server.url, "COLLAPSEWATCH_TOKEN": server.token},
            cwd=project,
        )
        assert script.returncode == 0, script.stderr
        run_id = int(script.stdout.split("RUN ")[1].split()[0])
        assert "IMPORTED []" in script.stdout
        epochs = server.http.get(f"/api/v1/runs/{run_id}/epochs").json()
        assert [e["epoch"] for e in epochs] == [1, 2] and all(e["stats"]["mean_sv"] > 0 for e in epochs)

        worker_token = run(
            [str(venv / "bin" / "collapsewatch"), "token", "create", "--worker", "--data", str(data)],
            env=env,
            cwd=project,
        ).stdout.strip()
        worker_env = env | {
            "COLLAPSEWATCH_WORKER_TOKEN": worker_token,
            "COLLAPSEWATCH_SERVER_URL": server.url,
            "COLLAPSEWATCH_DATA_DIR": str(data),  # the same SQLite broker as the server
        }
        log = tmp_path / "worker.log"
        worker = start(
            [str(venv / "bin" / "collapsewatch"), "worker", "--gpus", "none"],
            env=worker_env,
            cwd=project,
            log=log,
        )
        try:
            run_id = server.submit(JOB)
            done = server.wait_ended(run_id)
            assert done["status"] == "succeeded", (done, log.read_text()[-3000:])
        finally:
            stop(worker)
        assert "the user's worker" not in log.read_text()
