"""docker-compose.yml cannot run here (no Docker engine): read it as Compose does and check it against
the code. First the YAML as written, then Compose's interpolation with only the variables
.env.example marks required, then with all of them; then every service's command (the CLI's own
parser), environment (the settings classes, COLLAPSEWATCH_ names) and volumes, and the Dockerfile."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from app.settings import Settings
from collapsewatch.cli import build_parser
from tests.queue.composekit import (
    REPO,
    MissingVariable,
    env_example,
    mounts,
    raw,
    references,
    resolve,
    strings,
    volume_of,
)
from worker.settings import WorkerSettings, parse_gpus

PREFIX = "COLLAPSEWATCH_"
WEB_SERVICES = ("migrate", "worker-token", "web")  # the web image: app/settings.py
WORKER_SERVICES = ("worker", "worker-gpu")  # the worker image: worker/settings.py
COMPOSE_OWN = {"COMPOSE_PROFILES"}  # read by Compose itself, not by the file


def required_env() -> dict[str, str]:
    required, _ = env_example()
    return {name: f"s3cr3t{name.lower().replace('_', '')}" for name in required}  # URL-safe, like hex


def all_env() -> dict[str, str]:
    _, optional = env_example()
    return optional | required_env()


@pytest.fixture(scope="module")
def services() -> dict[str, Any]:
    """The services after interpolation with only the required variables set."""
    data: dict[str, Any] = resolve(raw(), required_env())
    return data["services"]


def settings_fields(
    environment: dict[str, str], model: type[Settings] | type[WorkerSettings]
) -> dict[str, str]:
    """``COLLAPSEWATCH_X`` -> field ``x`` (failing on any name the settings class does not have)."""
    unknown = sorted(
        k
        for k in environment
        if not k.startswith(PREFIX) or k[len(PREFIX) :].lower() not in model.model_fields
    )
    assert not unknown, f"names {model.__name__} does not read: {unknown}"
    return {k[len(PREFIX) :].lower(): v for k, v in environment.items()}


# -- the file as Compose reads it ----------------------------------------------------------------


def test_compose_file_parses_as_yaml_as_written() -> None:
    data = raw()  # no substitution first: Compose parses the YAML, then interpolates values
    assert set(data["services"]) == {
        "postgres",
        "redis",
        "migrate",
        "worker-token",
        "web",
        "worker",
        "worker-gpu",
    }
    assert all("${" in s or "$$" in s for s in strings(data) if "$" in s)
    assert set(data["volumes"]) == {"pgdata", "redisdata", "artifacts", "secrets"}


def test_compose_interpolates_with_only_the_required_variables() -> None:
    required = required_env()
    resolved = resolve(raw(), required)
    web = resolved["services"]["web"]["environment"]
    assert f":{required['POSTGRES_PASSWORD']}@postgres:5432/" in web["COLLAPSEWATCH_DATABASE_URL"]
    assert web["COLLAPSEWATCH_SECRET_KEY"] == required["COLLAPSEWATCH_SECRET_KEY"]
    for name in required:  # each one is really required: Compose refuses to start without it
        with pytest.raises(MissingVariable, match=name):
            resolve(raw(), {k: v for k, v in required.items() if k != name})
        with pytest.raises(MissingVariable, match=name):
            resolve(raw(), required | {name: ""})


def test_compose_interpolates_with_all_variables_the_same_as_with_the_defaults() -> None:
    """.env.example's optional values are the defaults the file falls back to ("defaults shown")."""
    assert resolve(raw(), all_env()) == resolve(raw(), required_env())
    changed = resolve(raw(), all_env() | {"WEB_PORTS": "8000-8003", "COLLAPSEWATCH_QUEUE_PREFIX": "team-"})
    assert changed["services"]["web"]["ports"] == ["0.0.0.0:8000-8003:8000"]
    assert changed["services"]["worker"]["environment"]["COLLAPSEWATCH_QUEUE_PREFIX"] == "team-"


def test_interpolation_follows_composes_rules() -> None:
    from tests.queue.composekit import interpolate

    env = {"SET": "v", "EMPTY": ""}
    assert interpolate("a$$b ${SET} $SET ${UNSET}", env) == "a$b v v "
    assert [interpolate(f"${{EMPTY{op}d}}", env) for op in (":-", "-", ":+", "+")] == ["d", "", "", "d"]
    assert [interpolate(f"${{UNSET{op}d}}", env) for op in (":-", "-", ":+", "+")] == ["d", "d", "", ""]
    assert interpolate("${UNSET:-${SET}-x}", env) == "v-x" and interpolate("${EMPTY?e}", env) == ""
    with pytest.raises(MissingVariable, match="UNSET: say so"):
        interpolate("${UNSET?say so}", env)
    with pytest.raises(MissingVariable, match="EMPTY"):
        interpolate("${EMPTY:?e}", env)


def test_env_example_lists_every_variable_and_marks_the_required_ones() -> None:
    required, optional = env_example()
    refs = [ref for text in strings(raw()) for ref in references(text)]
    read = {ref.name for ref in refs}
    must = {ref.name for ref in refs if ref.operator in (":?", "?")}
    assert read <= set(required) | set(optional), (
        f".env.example lacks {sorted(read - set(required) - set(optional))}"
    )
    assert set(required) == must, "the required section must list exactly the ${VAR:?...} variables"
    stale = (set(required) | set(optional)) - read - COMPOSE_OWN
    assert not stale, f".env.example names variables docker-compose.yml never reads: {sorted(stale)}"
    assert all(value == "" for value in required.values()), "secrets are set by the admin, not shipped"
    docs = (REPO / "docs" / "deploy.md").read_text()
    undocumented = sorted(name for name in (*required, *optional) if f"`{name}`" not in docs)
    assert not undocumented, f"docs/deploy.md does not say what these do: {undocumented}"


# -- each service against what the application reads ---------------------------------------------


def test_compose_server_environment_is_what_app_settings_read(services: dict[str, Any]) -> None:
    for name in WEB_SERVICES:
        fields = settings_fields(services[name]["environment"], Settings)
        settings = Settings(_env_file=None, **fields)  # type: ignore[arg-type]
        assert (
            settings.database_url.startswith("postgresql+psycopg://")
            and "@postgres:5432/" in settings.database_url
        )
        assert settings.broker_url.startswith("redis://:") and settings.redis_url
        assert settings.auto_migrate is False, f"{name}: migrations run once, in the migrate service"
        assert settings.secret_key.get_secret_value(), name


def test_compose_worker_environment_is_what_worker_settings_read(
    services: dict[str, Any], tmp_path: Path
) -> None:
    token_file = tmp_path / "worker-token"
    token_file.write_text("cw_token\n")
    for name in WORKER_SERVICES:
        fields = settings_fields(services[name]["environment"], WorkerSettings)
        settings = WorkerSettings(_env_file=None, **(fields | {"worker_token_file": str(token_file)}))  # type: ignore[arg-type]
        assert settings.worker_token == "cw_token" and settings.broker_url.startswith("redis://:")


def test_compose_commands_parse_with_the_cli(services: dict[str, Any]) -> None:
    parsed = {}
    for name in (*WEB_SERVICES, *WORKER_SERVICES):
        command = services[name]["command"]
        assert command[0] == "collapsewatch", name
        parsed[name] = build_parser(command[1]).parse_args(command[1:])
    assert (parsed["migrate"].command, parsed["migrate"].action) == ("db", "upgrade")
    assert parsed["worker-token"].worker and parsed["worker-token"].file
    assert (parsed["web"].command, parsed["web"].host) == ("serve", "0.0.0.0")
    assert parse_gpus(parsed["worker"].gpus) == [] and parse_gpus(parsed["worker-gpu"].gpus) == "auto"


def test_compose_services_agree_on_urls_secrets_and_volumes(services: dict[str, Any]) -> None:
    web, worker, redis = services["web"], services["worker"], services["redis"]
    password = redis["command"][redis["command"].index("--requirepass") + 1]
    assert password and redis["environment"]["REDISCLI_AUTH"] == password
    assert password == required_env()["REDIS_PASSWORD"]
    db = services["postgres"]["environment"]
    url = f"postgresql+psycopg://{db['POSTGRES_USER']}:{db['POSTGRES_PASSWORD']}@postgres:5432/{db['POSTGRES_DB']}"
    for name in WEB_SERVICES:
        assert services[name]["environment"]["COLLAPSEWATCH_DATABASE_URL"] == url
    for name in (*WEB_SERVICES, *WORKER_SERVICES):  # one broker, with the password, one prefix
        environment = services[name]["environment"]
        assert environment["COLLAPSEWATCH_BROKER_URL"] == f"redis://:{password}@redis:6379/0"
        assert environment["COLLAPSEWATCH_QUEUE_PREFIX"] == web["environment"]["COLLAPSEWATCH_QUEUE_PREFIX"]
    port = build_parser("serve").parse_args(web["command"][1:]).port
    assert worker["environment"]["COLLAPSEWATCH_SERVER_URL"] == f"http://web:{port}"
    assert web["ports"][0].endswith(f":{port}")
    # the worker token: written by worker-token into `secrets`, read (read-only) by every worker
    written = build_parser("token").parse_args(services["worker-token"]["command"][1:]).file
    assert volume_of(services["worker-token"], written) == "secrets"
    for name in WORKER_SERVICES:
        token_path = services[name]["environment"]["COLLAPSEWATCH_WORKER_TOKEN_FILE"]
        assert token_path == written and volume_of(services[name], token_path) == "secrets"
        assert ("secrets", "/data/secrets", True) in mounts(services[name])
    # checkpoints: every web replica writes the same `artifacts` volume (or the S3 store)
    assert volume_of(web, web["environment"]["COLLAPSEWATCH_ARTIFACT_DIR"]) == "artifacts"
    assert any(v == ("pgdata", "/var/lib/postgresql/data", False) for v in mounts(services["postgres"]))
    assert redis["command"][redis["command"].index("--appendonly") + 1] == "yes"
    named = {source for s in services.values() for source, _, _ in mounts(s)}
    assert named <= set(raw()["volumes"])


def test_compose_runs_migrations_once_before_any_replica(services: dict[str, Any]) -> None:
    migrate, web = services["migrate"], services["web"]
    assert migrate["restart"] == "no" and "deploy" not in migrate
    assert web["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert services["worker-token"]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert "upgrade" not in web["command"] and int(web["deploy"]["replicas"]) >= 1
    for name in WORKER_SERVICES:
        depends = services[name]["depends_on"]
        assert depends["worker-token"]["condition"] == "service_completed_successfully"
        assert depends["web"]["condition"] == "service_healthy"
    assert services["postgres"]["healthcheck"]["test"][0] == "CMD-SHELL"
    assert "pg_isready" in services["postgres"]["healthcheck"]["test"][1]


def test_compose_reserves_gpus_only_in_the_gpu_profile(services: dict[str, Any]) -> None:
    reserving = {name for name, s in services.items() if "resources" in s.get("deploy", {})}
    assert reserving == {"worker-gpu"} and services["worker-gpu"]["profiles"] == ["gpu"]
    devices = services["worker-gpu"]["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["driver"] == "nvidia" and devices[0]["capabilities"] == ["gpu"]
    assert all("profiles" not in services[name] for name in services if name != "worker-gpu")
    assert services["worker"]["build"]["args"]["TORCH"] == "cpu"
    assert services["worker-gpu"]["build"]["args"]["TORCH"] == "cuda"
    for name in WEB_SERVICES:
        assert services[name]["build"]["target"] == "web"


# -- the images ---------------------------------------------------------------------------------


def test_images_are_pinned_and_built_from_the_locks_as_a_non_root_user(services: dict[str, Any]) -> None:
    for name in ("postgres", "redis"):
        assert re.fullmatch(r"[a-z]+:\d+\.\d+(\.\d+)?", services[name]["image"]), services[name]["image"]
    dockerfile = (REPO / "Dockerfile").read_text()
    base = re.search(r"^ARG PYTHON_IMAGE=(\S+)$", dockerfile, re.M)
    assert base and re.fullmatch(r"python:3\.11\.\d+-slim-[a-z]+(@sha256:[0-9a-f]{64})?", base.group(1))
    stages = {alias: image for image, alias in re.findall(r"^FROM (\S+) AS (\S+)$", dockerfile, re.M)}
    assert stages == {"source": "scratch", "base": "${PYTHON_IMAGE}", "web": "base", "worker": "base"}
    installs = [line for line in dockerfile.splitlines() if "pip install" in line and "-r " in line]
    assert len(installs) == 2 and all("--require-hashes" in line and "--no-deps" in line for line in installs)
    assert "COPY locks/web.txt" in dockerfile and "COPY locks/worker-${TORCH}.txt" in dockerfile
    for torch in ("cpu", "cuda"):
        assert (REPO / "locks" / f"worker-{torch}.txt").is_file()
    ignored = (REPO / ".dockerignore").read_text().splitlines()
    assert ignored[1] == "*" and "!.env" not in ignored  # the context holds what is copied, never .env
    for line in re.findall(r"^COPY (?!--from)(.+)$", dockerfile, re.M):
        for copied in line.split()[:-1]:
            assert {f"!{copied}", f"!{copied}/", "!locks/*.txt" if copied.startswith("locks/") else ""} & set(
                ignored
            )
    # `collapsewatch train --example` in a worker image reads the example next to the editable install
    assert "COPY examples/digits-svmax.yaml /examples/digits-svmax.yaml" in dockerfile
    users = re.findall(r"^USER (\S+)$", dockerfile, re.M)
    assert users == ["collapsewatch", "collapsewatch"]  # web and worker both drop root
    assert "chown -R collapsewatch:collapsewatch /data" in dockerfile
    for name in (*WEB_SERVICES, *WORKER_SERVICES):  # what they write lies in /data, the user's
        for _, target, _ in mounts(services[name]):
            assert target.startswith("/data/"), (name, target)
