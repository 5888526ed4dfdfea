"""Settings (collapsewatch/envsettings.py): ``COLLAPSEWATCH_<FIELD>`` for every field of the server's and
the worker's settings, the unprefixed names still read with a deprecation warning naming the new one,
an env file read only when named, foreign keys ignored, and ``data_dir`` moving the embedded files."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import pytest
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined
from pydantic_settings import BaseSettings

from app.settings import Settings
from collapsewatch.cli import main
from collapsewatch.envsettings import ENV_FILE_VAR, SettingDeprecationWarning, SettingsError, env_name, load
from tests.app.cli.clikit import SETTING_FIELDS
from worker.settings import WorkerSettings


def _sample(field: FieldInfo) -> str:
    """A valid value of the field, as an environment variable holds it (its default where it has one)."""
    default = field.default
    if default is not None and default is not PydanticUndefined:
        plain = getattr(default, "get_secret_value", lambda: default)()
        return str(plain).lower() if isinstance(plain, bool) else str(plain)
    annotation = str(field.annotation)
    if "bool" in annotation:
        return "true"
    return "/tmp/cw-sample" if "Path" in annotation else "sample"


@pytest.fixture(autouse=True)
def _no_settings_in_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for field in SETTING_FIELDS:
        monkeypatch.delenv(field.upper(), raising=False)
        monkeypatch.delenv(env_name(field), raising=False)
    for name in (ENV_FILE_VAR, "COLLAPSEWATCH_DATA_DIR"):  # main() sets these: restore them afterwards
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


@pytest.mark.parametrize("cls", [Settings, WorkerSettings], ids=lambda c: c.__name__)
def test_settings_when_prefixed_variable_set_read_every_field(
    cls: type[BaseSettings], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, field in cls.model_fields.items():
        monkeypatch.setenv(env_name(name), _sample(field))
    with warnings.catch_warnings():
        warnings.simplefilter("error", SettingDeprecationWarning)
        settings = cls()
    assert settings.model_fields_set == set(cls.model_fields)  # each one came from its variable
    monkeypatch.setenv("COLLAPSEWATCH_QUEUE_PREFIX", "lab-")
    assert cls().queue_prefix == "lab-"  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("cls", "field", "raw", "expected"),
    [(Settings, "lease_seconds", "15", 15), (Settings, "database_url", "postgres://u@h/db", "postgresql+psycopg://u@h/db"),
     (WorkerSettings, "server_url", "http://gpu-box:8000/", "http://gpu-box:8000")],
)  # fmt: skip
def test_settings_when_only_unprefixed_name_set_read_it_and_warn_naming_the_new_one(
    cls: type[BaseSettings], field: str, raw: str, expected: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(field.upper(), raw)
    with pytest.warns(
        SettingDeprecationWarning, match=f"^{field.upper()} is deprecated; set {env_name(field)}"
    ):
        assert getattr(cls(), field) == expected


def test_settings_when_both_names_set_use_the_prefixed_one_without_warning(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LEASE_SECONDS", "15")
    monkeypatch.setenv("COLLAPSEWATCH_LEASE_SECONDS", "16")
    with warnings.catch_warnings():
        warnings.simplefilter("error", SettingDeprecationWarning)
        assert Settings().lease_seconds == 16


def test_settings_when_foreign_dotenv_in_working_directory_ignore_it(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text(
        "DATABASE_URL=mysql://someone-elses/app\nCOLLAPSEWATCH_LEASE_SECONDS=not-a-number\nSECRET_KEY=\n"
        "garbage line without equals\n=\nexport DJANGO_SETTINGS_MODULE=site.settings\n"
    )
    settings = Settings()
    assert settings.database_url == "sqlite:///./collapsewatch.db" and settings.lease_seconds == 60
    assert WorkerSettings().broker_url == settings.broker_url


def test_settings_when_env_file_named_read_ours_warn_legacy_ignore_foreign(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env_file = tmp_path / "lab.env"
    env_file.write_text(
        "COLLAPSEWATCH_LEASE_SECONDS=21\nMAX_ATTEMPTS=7\nDJANGO_DEBUG=1\nPOSTGRES_PASSWORD=x\n"
        "COLLAPSEWATCH_SERVER_URL=http://web:8000\nCOLLAPSEWATCH_NOT_A_SETTING=1\n"
    )
    monkeypatch.setenv(ENV_FILE_VAR, str(env_file))
    monkeypatch.setenv("COLLAPSEWATCH_SWEEP_AFTER_SECONDS", "8")
    with pytest.warns(
        SettingDeprecationWarning, match=r"^MAX_ATTEMPTS .*COLLAPSEWATCH_MAX_ATTEMPTS .*env file"
    ):
        settings = Settings()
    assert (settings.lease_seconds, settings.max_attempts, settings.sweep_after_seconds) == (21, 7, 8.0)
    assert WorkerSettings().server_url == "http://web:8000"
    monkeypatch.setenv("COLLAPSEWATCH_LEASE_SECONDS", "22")  # the environment beats the file
    assert Settings().lease_seconds == 22


def test_settings_when_named_env_file_missing_name_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_FILE_VAR, "/nowhere/lab.env")
    with pytest.raises(SettingsError, match=f"^{ENV_FILE_VAR}: no such env file '/nowhere/lab.env'"):
        load(Settings)


def test_settings_when_value_bad_name_the_variable_and_what_is_allowed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("COLLAPSEWATCH_LEASE_SECONDS", "0")
    with pytest.raises(SettingsError, match=r"^COLLAPSEWATCH_LEASE_SECONDS: .*greater than or equal to 1"):
        load(Settings)
    monkeypatch.delenv("COLLAPSEWATCH_LEASE_SECONDS")
    monkeypatch.setenv("COLLAPSEWATCH_WORKER_GPUS", "zero")
    with pytest.raises(SettingsError, match=r"^COLLAPSEWATCH_WORKER_GPUS: gpus: 'zero' is not allowed"):
        load(WorkerSettings)


def test_settings_when_data_dir_set_put_database_broker_and_artifacts_there(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLLAPSEWATCH_DATA_DIR", "lab-data")  # relative: resolved once, for every process
    root = (tmp_path / "lab-data").resolve()
    settings = Settings()
    assert settings.database_url == f"sqlite:///{root / 'collapsewatch.db'}"
    assert settings.broker_url == f"sqla+sqlite:///{root / 'collapsewatch-broker.db'}"
    assert settings.artifact_dir == root / "artifacts"
    assert WorkerSettings().broker_url == settings.broker_url  # the worker finds the same broker
    monkeypatch.setenv("COLLAPSEWATCH_DATABASE_URL", "postgresql://u@h/db")  # a named place wins
    moved = Settings()
    assert moved.database_url == "postgresql+psycopg://u@h/db" and moved.broker_url == settings.broker_url


@pytest.mark.parametrize("where", ["before", "after"])
def test_cli_when_env_file_given_its_settings_reach_the_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    from app.settings import get_settings

    database = tmp_path / "from-env-file.db"
    env_file = tmp_path / "cw.env"
    env_file.write_text(f"COLLAPSEWATCH_DATABASE_URL=sqlite:///{database}\nUNRELATED=1\n")
    args = (
        ["--env-file", str(env_file), "db", "upgrade"]
        if where == "before"
        else ["db", "upgrade", "--env-file", str(env_file)]
    )
    get_settings.cache_clear()
    try:
        assert main(args) == 0
    finally:
        get_settings.cache_clear()
    assert database.stat().st_size > 0 and not (tmp_path / "collapsewatch.db").exists()
