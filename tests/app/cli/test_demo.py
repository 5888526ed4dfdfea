"""``collapsewatch demo`` submits the seed's claims, prints their compare URLs and follows the runs with
progress lines until every one has ended (here they are cancelled: no worker is needed, no report)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from app.demo.experiments import experiments, run_count
from tests.app.cli.clikit import clean_env, cli, free_port, start, stop, wait_healthy, wait_until

Server = tuple[str, str, dict[str, str]]  # URL, user token, environment
QUICK_RUNS = run_count(experiments(quick=True))


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    env = clean_env({"COLLAPSEWATCH_DATA_DIR": str(tmp_path / "data")})
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "serve.log"
    cli("db", "upgrade", env=env, cwd=tmp_path)
    proc = start(
        [sys.executable, "-m", "collapsewatch.cli", "serve", "--port", str(port)],
        env=env,
        cwd=tmp_path,
        log=log,
    )
    try:
        wait_healthy(url, proc, log)
        token = cli("token", "create", env=env, cwd=tmp_path).stdout.strip()
        yield url, token, env
    finally:
        stop(proc)


def test_demo_when_runs_end_follows_them_with_progress_then_sums_up(server: Server, tmp_path: Path) -> None:
    url, token, env = server
    headers = {"Authorization": f"Bearer {token}"}
    demo = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "collapsewatch.cli",
            "demo",
            "--url",
            url,
            "--token",
            token,
            "--quick",
        ],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:

        def submitted() -> list[dict[str, object]] | None:
            runs = httpx.get(
                f"{url}/api/v1/runs", params={"project": "demo", "limit": 500}, headers=headers
            ).json()
            return runs if len(runs) == QUICK_RUNS else None

        runs = wait_until(submitted, timeout=60, what=f"the demo's {QUICK_RUNS} runs")
        for run in runs:
            assert httpx.post(f"{url}/api/v1/runs/{run['id']}/cancel", headers=headers).status_code == 200
        out, err = demo.communicate(timeout=60)
    finally:
        if demo.poll() is None:
            demo.kill()
    assert demo.returncode == 1  # not every run succeeded
    lines = out.splitlines()
    assert sum(line.startswith(f"  {url}/compare?sweep=") for line in lines) == 4  # one per claim/study
    assert lines[-1] == f"demo runs ended: 0 succeeded, {QUICK_RUNS} cancelled"  # no report without runs
    assert f"{QUICK_RUNS}/{QUICK_RUNS} runs finished" in err and "Traceback" not in err


def test_demo_when_no_wait_returns_after_printing_the_urls(server: Server, tmp_path: Path) -> None:
    url, token, env = server
    done = cli(
        "demo",
        "--url",
        url,
        "--token",
        token,
        "--quick",
        "--no-wait",
        env=env,
        cwd=tmp_path,
    )
    assert (
        done.returncode == 0
        and done.stdout.count(f"{url}/compare?sweep=") == 4
        and "runs finished" not in done.stderr
    )


def test_demo_reads_the_server_from_collapsewatch_url_and_names_a_refused_token(
    server: Server, tmp_path: Path
) -> None:
    url, token, env = server
    env = env | {"COLLAPSEWATCH_URL": url}
    done = cli("demo", "--token", token, "--quick", "--no-wait", env=env, cwd=tmp_path)
    assert done.returncode == 0 and f"{url}/compare?sweep=" in done.stdout, done.stderr
    refused = cli("demo", "--token", "cw_not-a-token", "--quick", "--no-wait", env=env, cwd=tmp_path)
    assert refused.returncode == 1 and "token was refused" in refused.stderr, refused.stderr
    assert "is `collapsewatch up` running" not in refused.stderr
