"""``collapsewatch up`` where a user runs it: a working directory holding someone else's ``.env``,
``--data DIR`` for the files, the place printed at start, and a submitted job trained by the embedded
worker (``--data`` reaches the worker's broker too)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.app.cli.clikit import clean_env, cli, free_port, start, stop, wait_healthy, wait_until

FOREIGN_ENV = (
    "DATABASE_URL=mysql://root:pw@db/shop\nSECRET_KEY=\nBROKER_URL=amqp://nowhere//\nLEASE_SECONDS=soon\n"
    "COLLAPSEWATCH_LEASE_SECONDS=never\nthis line is not a setting\nexport NODE_ENV=production\n"
)
TINY_JOB = {
    "dataset": "digits", "model": "mlp", "embedding_dim": 8, "epochs": 2, "probe_size": 64,
    "batch_size": 256, "device": "cpu",
}  # fmt: skip


@pytest.mark.slow
def test_up_when_working_directory_has_foreign_env_serves_from_data_dir_and_trains(tmp_path: Path) -> None:
    project = tmp_path / "someone-elses-project"
    project.mkdir()
    (project / ".env").write_text(FOREIGN_ENV)
    data = tmp_path / "cw-data"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "up.log"
    proc = start(
        [*cli_argv(), "up", "--port", str(port), "--data", str(data), "--gpus", "none"],
        env=clean_env(),
        cwd=project,
        log=log,
    )
    try:
        wait_healthy(url, proc, log)
        banner = log.read_text().splitlines()[0]
        assert banner == (
            f"data: database {data / 'collapsewatch.db'}, broker {data / 'collapsewatch-broker.db'}, "
            f"artifacts {data / 'artifacts'}"
        )
        assert httpx.get(f"{url}/runs", timeout=30).status_code == 200  # local admin, no sign-in
        token = cli("token", "create", "--data", str(data), env=clean_env(), cwd=project).stdout.strip()
        headers = {"Authorization": f"Bearer {token}"}
        [run] = httpx.post(f"{url}/api/v1/jobs", json={"spec": TINY_JOB}, headers=headers, timeout=30).json()

        def ended() -> dict[str, object] | None:
            found = httpx.get(f"{url}/api/v1/runs/{run['id']}", headers=headers, timeout=30).json()
            return found if found["status"] in ("succeeded", "failed", "cancelled") else None

        done = wait_until(ended, timeout=240, what="the job to end")
        assert done["status"] == "succeeded", done
        report = httpx.post(
            f"{url}/api/v1/reports", json={"project": "default", "title": "t", "query": f"run={run['id']}"},
            headers=headers, timeout=30,
        ).json()  # fmt: skip
        shares = f"{url}/api/v1/reports/{report['id']}/shares"
        share = httpx.post(shares, json={}, headers=headers, timeout=30)
        assert share.json()["url"].startswith(f"{url}/s/")  # links name the port it serves on
    finally:
        code = stop(proc)
    assert code == 0, log.read_text()[-3000:]
    assert sorted(p.name for p in project.iterdir()) == [".env"]  # nothing written beside the user's files
    assert {"collapsewatch.db", "collapsewatch-broker.db", "artifacts"} <= {p.name for p in data.iterdir()}


def test_up_when_no_data_dir_prints_where_the_files_go_and_how_to_move_them(tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "up.log"
    (tmp_path / ".env").write_text(FOREIGN_ENV)
    proc = start(
        [*cli_argv(), "up", "--port", str(port), "--no-worker"], env=clean_env(), cwd=tmp_path, log=log
    )
    try:
        wait_healthy(f"http://127.0.0.1:{port}", proc, log)
    finally:
        assert stop(proc) == 0
    banner = log.read_text().splitlines()[0]
    root = tmp_path.resolve()
    assert banner.startswith(
        f"data: database {root / 'collapsewatch.db'}, broker {root / 'collapsewatch-broker.db'}"
    )
    assert banner.endswith("(--data DIR or $COLLAPSEWATCH_DATA_DIR moves them)")
    assert (tmp_path / "collapsewatch.db").exists()


def cli_argv() -> list[str]:
    import sys

    return [sys.executable, "-m", "collapsewatch.cli"]
