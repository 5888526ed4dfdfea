"""`collapsewatch db upgrade`, `token create` (stdout = the token only) and importing app.main."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect, select
from sqlalchemy.orm import Session

from app.auth.tokens import hash_token
from app.models import ApiToken, User
from app.settings import Settings
from collapsewatch.envsettings import SettingsError, load

ROOT = Path(__file__).resolve().parents[3]


class Cli:
    """Runs `collapsewatch …` in-process with COLLAPSEWATCH_DATABASE_URL at a fresh SQLite file."""

    def __init__(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        self.db_path = tmp_path / "cw.db"
        self.capsys = capsys
        monkeypatch.setenv("COLLAPSEWATCH_DATABASE_URL", f"sqlite:///{self.db_path}")
        monkeypatch.setenv("COLLAPSEWATCH_ARTIFACT_DIR", str(tmp_path / "artifacts"))
        monkeypatch.chdir(tmp_path)
        for name in ("COLLAPSEWATCH_ENV_FILE", "COLLAPSEWATCH_DATA_DIR"):  # restored after the test
            monkeypatch.setenv(name, "")
            monkeypatch.delenv(name)

    def __call__(self, *args: str) -> tuple[int, str]:
        from app.settings import get_settings
        from collapsewatch.cli import main

        get_settings.cache_clear()
        try:
            code = main(list(args))
        finally:
            get_settings.cache_clear()
        captured = self.capsys.readouterr()
        self.err = captured.err
        return code, captured.out


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Cli:
    return Cli(tmp_path, monkeypatch, capsys)


def test_db_upgrade_when_empty_database_creates_tables(cli: Cli) -> None:
    assert cli("db", "upgrade")[0] == 0
    engine = create_engine(f"sqlite:///{cli.db_path}")
    assert {"runs", "epochs", "metrics", "run_events", "api_tokens"} <= set(inspect(engine).get_table_names())
    engine.dispose()


@pytest.mark.parametrize(("flags", "kind"), [([], "user"), (["--worker", "--name", "gpu-box"], "worker")])
def test_token_create_when_run_prints_only_a_working_token(cli: Cli, flags: list[str], kind: str) -> None:
    code, out = cli("token", "create", *flags)
    assert code == 0
    lines = out.splitlines()
    assert len(lines) == 1 and lines[0].startswith("cw_") and len(lines[0]) > 40
    engine = create_engine(f"sqlite:///{cli.db_path}")
    with Session(engine) as session:
        record = session.scalars(select(ApiToken).where(ApiToken.token_hash == hash_token(lines[0]))).one()
        admin = session.get(User, record.user_id)
        assert record.kind == kind and admin is not None and admin.is_admin
        assert record.prefix == lines[0][:10] and lines[0] not in record.token_hash
    engine.dispose()


def test_token_create_when_run_twice_reuses_the_local_admin(cli: Cli) -> None:
    first, second = cli("token", "create"), cli("token", "create")
    assert first[1] != second[1]
    engine = create_engine(f"sqlite:///{cli.db_path}")
    with Session(engine) as session:
        assert len(session.scalars(select(User)).all()) == 1
    engine.dispose()


def test_token_create_when_no_database_yet_says_it_made_one_on_stderr_only(cli: Cli) -> None:
    code, out = cli("token", "create")
    assert code == 0 and out.startswith("cw_") and len(out.splitlines()) == 1
    assert f"no database at {cli.db_path}: created it" in cli.err, cli.err
    assert cli("token", "create")[0] == 0
    assert "no database" not in cli.err  # the second time it exists


def test_import_app_main_when_database_absent_creates_no_file(tmp_path: Path) -> None:
    code = "import app.main; print(type(app.main.app).__name__)"
    env = os.environ | {
        "COLLAPSEWATCH_DATABASE_URL": f"sqlite:///{tmp_path / 'never.db'}",
        "PYTHONPATH": str(ROOT),
    }
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "FastAPI" and not (tmp_path / "never.db").exists()


def test_settings_when_env_set_are_read_and_postgres_url_gets_psycopg(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("COLLAPSEWATCH_DATABASE_URL", "postgres://u@h/db")
    monkeypatch.setenv("COLLAPSEWATCH_LEASE_SECONDS", "15")
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.database_url == "postgresql+psycopg://u@h/db" and settings.lease_seconds == 15
    assert not settings.is_sqlite


def test_settings_when_database_url_unsupported_names_the_variable() -> None:
    with pytest.raises(
        SettingsError, match=r"^COLLAPSEWATCH_DATABASE_URL: must be sqlite:///PATH or postgres"
    ):
        load(Settings, database_url="mysql://x/y", _env_file=None)


def test_secret_key_when_unset_is_generated_once_and_kept(tmp_path: Path) -> None:
    settings = Settings(artifact_dir=tmp_path, _env_file=None)  # type: ignore[call-arg]
    first = settings.resolved_secret_key()
    assert len(first) >= 32 and settings.resolved_secret_key() == first
    assert (tmp_path / ".secret_key").stat().st_mode & 0o077 == 0


def test_token_create_with_file_writes_once_and_prints_nothing(cli: Cli, tmp_path: Path) -> None:
    target = tmp_path / "shared" / "worker-token"
    code, out = cli("token", "create", "--worker", "--file", str(target))
    assert code == 0 and out == ""
    token = target.read_text().strip()
    assert token.startswith("cw_")
    assert cli("token", "create", "--worker", "--file", str(target)) == (0, "")
    assert target.read_text().strip() == token  # a restart of the init service keeps it
    with Session(create_engine(f"sqlite:///{cli.db_path}")) as session:
        row = session.scalar(select(ApiToken).where(ApiToken.token_hash == hash_token(token)))
        assert row is not None and row.kind == "worker"
