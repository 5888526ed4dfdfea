"""docker-compose.yml cannot run here (no Docker engine): check that it agrees with the code."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from app.settings import Settings
from collapsewatch.cli import build_parser
from worker.settings import WorkerSettings, parse_gpus

REPO = Path(__file__).resolve().parents[2]
VARIABLE = re.compile(r"\$\{(?P<name>[A-Z0-9_]+)(?:(?P<op>:-|:\?)(?P<arg>[^}]*))?\}")


def env_example() -> dict[str, str]:
    values = {}
    for line in (REPO / ".env.example").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    return values


def substitute(text: str, env: dict[str, str]) -> str:
    """Compose's interpolation: ${X}, ${X:-default}, ${X:?error}; $$ is a literal $."""

    def one(match: re.Match[str]) -> str:
        name, op, arg = match.group("name"), match.group("op"), match.group("arg")
        value = env.get(name, "")
        if op == ":-" and not value:
            return arg or ""
        if op == ":?" and not value:
            raise AssertionError(f"{name} is required: {arg}")
        return value

    return VARIABLE.sub(one, text).replace("$$", "$")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    env = env_example() | {"WORKER_TOKEN": "cw_example"}
    data: dict[str, Any] = yaml.safe_load(substitute((REPO / "docker-compose.yml").read_text(), env))
    return data


def test_compose_defines_the_four_services_with_persistence(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == {"postgres", "redis", "web", "worker"}
    assert "pg_isready" in " ".join(services["postgres"]["healthcheck"]["test"])
    assert any(v.endswith(":/var/lib/postgresql/data") for v in services["postgres"]["volumes"])
    redis_cmd = services["redis"]["command"]
    assert redis_cmd[redis_cmd.index("--appendonly") + 1] == "yes"
    assert any(v.endswith(":/data") for v in services["redis"]["volumes"])
    named = {v.split(":")[0] for s in services.values() for v in s.get("volumes", [])}
    assert named <= set(compose["volumes"])


def test_compose_web_migrates_then_serves_with_valid_settings(compose: dict[str, Any]) -> None:
    web = compose["services"]["web"]
    command = " ".join(web["command"])
    assert command.index("collapsewatch db upgrade") < command.index("app.main:app")
    env = web["environment"]
    unknown = set(env) - {name.upper() for name in Settings.model_fields}
    assert not unknown, f"web environment names unknown to app/settings.py: {unknown}"
    settings = Settings(_env_file=None, **{k.lower(): v for k, v in env.items()})  # type: ignore[call-arg]
    assert (
        settings.database_url.startswith("postgresql+psycopg://")
        and "@postgres:5432/" in settings.database_url
    )
    assert settings.broker_url.startswith("redis://redis:")
    for dependency in ("postgres", "redis"):
        assert web["depends_on"][dependency]["condition"] == "service_healthy"


def test_compose_worker_agrees_with_web_and_reserves_gpus(compose: dict[str, Any]) -> None:
    web, worker = compose["services"]["web"], compose["services"]["worker"]
    env = worker["environment"]
    unknown = set(env) - {name.upper() for name in WorkerSettings.model_fields}
    assert not unknown, f"worker environment names unknown to worker/settings.py: {unknown}"
    settings = WorkerSettings(_env_file=None, **{k.lower(): v for k, v in env.items()})  # type: ignore[call-arg]
    assert settings.broker_url == web["environment"]["BROKER_URL"]
    assert settings.queue_prefix == web["environment"].get("QUEUE_PREFIX", "")
    port = re.search(r"--port (\d+)", " ".join(web["command"]))
    assert port is not None and settings.server_url == f"http://web:{port.group(1)}"
    args = build_parser("worker").parse_args(worker["command"][1:])
    assert args.command == "worker" and worker["command"][0] == "collapsewatch"
    parse_gpus(args.gpus)
    devices = worker["deploy"]["resources"]["reservations"]["devices"]
    assert devices and "gpu" in devices[0]["capabilities"] and devices[0]["driver"] == "nvidia"
    assert int(worker["deploy"]["replicas"]) >= 1
    assert worker["depends_on"]["web"]["condition"] == "service_healthy"


def test_env_example_lists_every_variable_the_compose_file_reads() -> None:
    text = (REPO / "docker-compose.yml").read_text()
    referenced = {m.group("name") for m in VARIABLE.finditer(text)}
    missing = referenced - set(env_example())
    assert not missing, f".env.example lacks {sorted(missing)}"
    required = {m.group("name") for m in VARIABLE.finditer(text) if m.group("op") == ":?"}
    assert required <= set(env_example())
