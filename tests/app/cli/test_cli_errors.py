"""The CLI explains itself: ``--version``; bad usage, bad settings and unreachable services (database,
broker, server) end in one line and a non-zero exit, with the traceback only under ``--debug``;
``train`` without a config says what it needs; help names no file that does not ship; a command whose
extra is missing names the extra to install."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from collapsewatch import __version__
from collapsewatch.cli import COMMANDS, MissingExtra, build_parser
from tests.app.cli.clikit import ROOT, clean_env, cli, free_port, run

CLOSED = f"127.0.0.1:{free_port()}"  # nothing listens there


def _one_error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    return lines[0]


def test_version_when_asked_prints_the_package_version(tmp_path: Path) -> None:
    done = cli("--version", env=clean_env(), cwd=tmp_path)
    assert done.returncode == 0 and done.stdout.strip() == f"collapsewatch {__version__}"
    assert re.fullmatch(r"\d+\.\d+\.\d+.*", __version__)


@pytest.mark.parametrize(
    ("args", "names"),
    [(["frob"], "invalid choice: 'frob'"), (["db", "upgrad"], "invalid choice: 'upgrad'"),
     (["up", "--port", "eighty"], "--port: invalid int value"), ([], "the following arguments are required"),
     (["--env-file", "/no/such.env", "up"], "--env-file: no such file '/no/such.env'")],
)  # fmt: skip
def test_cli_when_usage_is_bad_prints_one_line_and_exits_2(
    tmp_path: Path, args: list[str], names: str
) -> None:
    done = cli(*args, env=clean_env(), cwd=tmp_path)
    assert done.returncode == 2
    line = _one_error_line(done.stderr)
    assert names in line and line.startswith("collapsewatch") and "--help" in line


@pytest.mark.parametrize(
    ("args", "variable", "names"),
    [(["token", "create"], "COLLAPSEWATCH_DATABASE_URL", f"postgresql+psycopg://***@{CLOSED}/x"),
     (["db", "upgrade"], "COLLAPSEWATCH_DATABASE_URL", f"postgresql+psycopg://***@{CLOSED}/x"),
     (["serve", "--port", "1"], "COLLAPSEWATCH_DATABASE_URL", f"postgresql+psycopg://***@{CLOSED}/x"),
     (["user", "create", "a@b.org"], "COLLAPSEWATCH_DATABASE_URL", f"postgresql+psycopg://***@{CLOSED}/x"),
     (["beat"], "COLLAPSEWATCH_BROKER_URL", f"redis://{CLOSED}/0"),
     (["worker"], "COLLAPSEWATCH_BROKER_URL", f"redis://{CLOSED}/0"),
     (["worker", "--wait-server", "1"], "COLLAPSEWATCH_SERVER_URL", f"http://{CLOSED}"),
     (["demo", "--token", "cw_x"], "--url", f"http://{CLOSED}")],
)  # fmt: skip
def test_cli_when_service_unreachable_prints_one_line_naming_it_and_exits_1(
    tmp_path: Path, args: list[str], variable: str, names: str
) -> None:
    env = clean_env(
        {
            "COLLAPSEWATCH_DATABASE_URL": f"postgresql://user:secret@{CLOSED}/x"
            if variable == "COLLAPSEWATCH_DATABASE_URL"
            else f"sqlite:///{tmp_path / 'cw.db'}",
            "COLLAPSEWATCH_BROKER_URL": f"redis://{CLOSED}/0"
            if variable == "COLLAPSEWATCH_BROKER_URL"
            else "",
            "COLLAPSEWATCH_SERVER_URL": f"http://{CLOSED}",
            "COLLAPSEWATCH_PUBLIC_URL": f"http://{CLOSED}",
            "COLLAPSEWATCH_WORKER_TOKEN": "cw_x",
        }
    )
    if not env["COLLAPSEWATCH_BROKER_URL"]:
        env["COLLAPSEWATCH_BROKER_URL"] = f"sqla+sqlite:///{tmp_path / 'broker.db'}"
    done = cli(*args, env=env, cwd=tmp_path, timeout=120)
    assert done.returncode == 1, done.stderr
    line = _one_error_line(done.stderr)
    assert line.startswith(f"collapsewatch {args[0]}: error: cannot ") or "could not submit" in line, line
    assert names in line and variable in line and "secret" not in line, line


def test_cli_when_debug_given_shows_the_traceback(tmp_path: Path) -> None:
    env = clean_env({"COLLAPSEWATCH_DATABASE_URL": f"postgresql://u@{CLOSED}/x"})
    done = cli("--debug", "token", "create", env=env, cwd=tmp_path)
    assert done.returncode != 0 and "Traceback (most recent call last)" in done.stderr
    assert "cannot reach the database" in done.stderr


@pytest.mark.parametrize(
    ("variable", "value", "names"),
    [("COLLAPSEWATCH_DATABASE_URL", "mysql://x/y", "must be sqlite:///PATH or postgresql+psycopg://"),
     ("COLLAPSEWATCH_LEASE_SECONDS", "soon", "valid integer"),
     ("COLLAPSEWATCH_ENV_FILE", "/nowhere.env", "no such env file")],
)  # fmt: skip
def test_cli_when_setting_is_bad_prints_one_line_naming_the_variable_and_exits_2(
    tmp_path: Path, variable: str, value: str, names: str
) -> None:
    done = cli("db", "upgrade", env=clean_env({variable: value}), cwd=tmp_path)
    assert done.returncode == 2
    line = _one_error_line(done.stderr)
    assert line.startswith(f"collapsewatch db: error: {variable}: ") and names in line


def test_cli_when_unprefixed_setting_used_warns_once_naming_the_new_one(tmp_path: Path) -> None:
    env = clean_env({"DATABASE_URL": f"sqlite:///{tmp_path / 'old.db'}"})
    done = cli("db", "upgrade", env=env, cwd=tmp_path)
    assert done.returncode == 0 and (tmp_path / "old.db").exists()
    warned = [line for line in done.stderr.splitlines() if "deprecated" in line]
    assert len(warned) == 1 and "DATABASE_URL is deprecated; set COLLAPSEWATCH_DATABASE_URL" in warned[0]


def test_train_when_no_config_given_says_what_it_needs_and_exits_2(tmp_path: Path) -> None:
    done = cli("train", env=clean_env(), cwd=tmp_path)
    assert done.returncode == 2 and done.stdout == "" and "Traceback" not in done.stderr
    assert "needs a job config" in done.stderr and "collapsewatch train --example > job.yaml" in done.stderr
    for key in ("dataset", "objective", "regularizer", "epochs"):
        assert key in done.stderr


def test_train_example_when_printed_is_the_shipped_example_and_a_valid_config(tmp_path: Path) -> None:
    from worker.training.config import load_spec

    done = cli("train", "--example", env=clean_env(), cwd=tmp_path)
    assert done.returncode == 0
    assert done.stdout == (ROOT / "examples" / "digits-svmax.yaml").read_text(encoding="utf-8")
    (tmp_path / "job.yaml").write_text(done.stdout)
    spec = load_spec(tmp_path / "job.yaml")
    assert spec.regularizer == "svmax" and yaml.safe_load(done.stdout)["dataset"] == "digits"


def test_help_when_printed_names_no_file_that_does_not_ship() -> None:
    texts = [build_parser().format_help()]
    for command in COMMANDS:
        try:
            parser = build_parser(command)
        except MissingExtra:  # `sync` before collapsewatch.sdk.sync exists
            continue
        sub = parser._subparsers._group_actions[0].choices[command]  # type: ignore[union-attr]
        texts.append(sub.format_help())
    text = "\n".join(texts)
    assert "--example" in text and "examples/" not in text
    paths = re.findall(r"\b[\w.-]+/[\w./-]+\.(?:ya?ml|py|json|npz|ini|toml)\b", text)
    assert not paths, f"help names files a wheel does not carry: {paths}"


def test_cli_when_extra_missing_names_the_extra_to_install(tmp_path: Path) -> None:
    blocker = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in {'fastapi', 'torch', 'celery'}:\n"
        "            raise ModuleNotFoundError(f'No module named {name!r}', name=name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "from collapsewatch.cli import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    for command, extra in (("up", "server"), ("worker", "worker"), ("train", "worker")):
        done = cli_with(blocker, command, cwd=tmp_path)
        assert done.returncode == 2, done.stderr
        line = _one_error_line(done.stderr)
        assert f"pip install 'collapsewatch[{extra}]'" in line and line.startswith(
            f"collapsewatch {command}:"
        )


def cli_with(code: str, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return run([sys.executable, "-c", code, *args], env=clean_env(), cwd=cwd)


def test_up_when_port_is_taken_says_so_before_starting_anything_and_exits_1(tmp_path: Path) -> None:
    import socket

    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    port = holder.getsockname()[1]
    try:
        env = clean_env({"COLLAPSEWATCH_DATA_DIR": str(tmp_path / "data")})
        done = cli("up", "--port", str(port), "--gpus", "none", env=env, cwd=tmp_path, timeout=120)
    finally:
        holder.close()
    assert done.returncode == 1, done.stderr
    assert "is up" not in done.stdout, done.stdout
    line = _one_error_line(done.stderr)
    assert line.startswith("collapsewatch up: error: --port ") and str(port) in line, line
    assert "in use" in line, line


def test_up_when_another_up_serves_the_same_database_says_so_and_exits_1(tmp_path: Path) -> None:
    import fcntl

    data = tmp_path / "data"
    data.mkdir()
    with open(data / "collapsewatch.db.up.lock", "a+") as held:  # what a running `up` holds
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        env = clean_env({"COLLAPSEWATCH_DATA_DIR": str(data)})
        done = cli("up", "--port", str(free_port()), "--gpus", "none", env=env, cwd=tmp_path, timeout=120)
    assert done.returncode == 1 and "is up" not in done.stdout, done.stdout
    line = _one_error_line(done.stderr)
    assert "another `collapsewatch up` is already serving" in line and "--data DIR" in line, line
