"""Run docker-compose.yml's services as plain processes (CI has PostgreSQL and Redis, no Docker).

Each service keeps Compose's own command and environment, read from the parsed file; only what a
container gets from Docker is translated:

- host names and ports of the Compose network (``postgres:5432``, ``redis:6379``, ``web:8000``) ->
  addresses on 127.0.0.1 (each web replica its own port);
- named volumes -> one host folder per volume, shared by every process that mounts it (the
  ``artifacts`` volume of two web replicas is one folder), and a container's own folders (its
  working directory, /tmp) -> one folder per process;
- ``collapsewatch`` -> this interpreter's ``-m collapsewatch.cli``.

Until the settings read ``COLLAPSEWATCH_`` names (the packaging issue), the prefix is dropped from
the names the application reads, so the same file drives today's code and tomorrow's.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.queue.composekit import REPO, mounts

PREFIX = "COLLAPSEWATCH_"
KEEP = ("PATH", "HOME", "LANG", "LC_ALL", "VIRTUAL_ENV", "SSL_CERT_FILE")
QUIET_THREADS = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


@contextmanager
def _env(name: str, value: str) -> Iterator[None]:
    saved = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if saved is None:
            del os.environ[name]
        else:
            os.environ[name] = saved


def settings_read_prefixed_names() -> bool:
    """Whether app/settings.py reads ``COLLAPSEWATCH_X`` (else the unprefixed ``X`` of today)."""
    from app.settings import Settings

    with _env(f"{PREFIX}QUEUE_PREFIX", "probe-"):
        return Settings(_env_file=None).queue_prefix == "probe-"  # type: ignore[call-arg]


@dataclass
class Host:
    """The machine standing in for Docker: addresses for service names, folders for volumes."""

    root: Path
    network: dict[str, str]  # "postgres:5432" -> "127.0.0.1:5432"
    prefixed: bool = field(default_factory=settings_read_prefixed_names)

    def volume(self, name: str) -> Path:
        path = self.root / "volumes" / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def translate(self, value: str, service: dict[str, Any], own: Path) -> str:
        """A value of ``service`` as this host sees it (URLs, mounted paths, the container's folders)."""
        for name, address in self.network.items():
            value = value.replace(f"@{name}", f"@{address}").replace(f"//{name}", f"//{address}")
        for source, target, _ in mounts(service):
            if value == target or value.startswith(target.rstrip("/") + "/"):
                return str(self.volume(source)) + value[len(target) :]
        if value.startswith("/data/"):  # the container's own folders (working directory)
            return str(own / value.lstrip("/"))
        return value

    def environment(self, service: dict[str, Any], own: Path) -> dict[str, str]:
        env = {k: os.environ[k] for k in KEEP if k in os.environ}
        env["PYTHONPATH"] = str(REPO)
        for key, value in service.get("environment", {}).items():
            name = key if self.prefixed or not key.startswith(PREFIX) else key[len(PREFIX) :]
            env[name] = self.translate(str(value), service, own)
        tmp = own / "tmp"  # every container has a /tmp of its own
        tmp.mkdir(parents=True, exist_ok=True)
        return env | QUIET_THREADS | {"TMPDIR": str(tmp)}

    def argv(self, service: dict[str, Any], own: Path, **flags: str) -> list[str]:
        """The service's command with ``collapsewatch`` as this interpreter and ``--flag`` values
        replaced by ``flags`` (``port="8123"``)."""
        command = [self.translate(str(word), service, own) for word in service["command"]]
        for i, word in enumerate(command[:-1]):
            key = word.removeprefix("--").replace("-", "_")
            if word.startswith("--") and key in flags:
                command[i + 1] = flags[key]
        if command[0] == "collapsewatch":
            command = [sys.executable, "-m", "collapsewatch.cli", *command[1:]]
        return command

    def workdir(self, service: dict[str, Any], name: str) -> tuple[Path, Path]:
        """(the process's own folder, its working directory) for one container of ``service``."""
        own = self.root / "containers" / name
        workdir = Path(self.translate(service.get("working_dir", "/data/work"), service, own))
        workdir.mkdir(parents=True, exist_ok=True)
        return own, workdir

    def run(self, service: dict[str, Any], name: str, **flags: str) -> subprocess.CompletedProcess[str]:
        """A one-shot service, to completion."""
        own, workdir = self.workdir(service, name)
        return subprocess.run(
            self.argv(service, own, **flags), env=self.environment(service, own), cwd=workdir,
            capture_output=True, text=True, timeout=180,
        )  # fmt: skip

    def start(self, service: dict[str, Any], name: str, **flags: str) -> tuple[subprocess.Popen[bytes], Path]:
        """A long-running service in its own process group; returns it and its log file."""
        own, workdir = self.workdir(service, name)
        log = self.root / f"{name}.log"
        with open(log, "ab") as handle:
            proc = subprocess.Popen(
                self.argv(service, own, **flags), env=self.environment(service, own), cwd=workdir,
                stdout=handle, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        return proc, log
