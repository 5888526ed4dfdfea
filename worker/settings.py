"""Settings of the worker deployable (one pydantic-settings class, read through a cached getter).

Environment variables (or an env file named by ``--env-file`` / ``COLLAPSEWATCH_ENV_FILE``; see
:mod:`collapsewatch.envsettings`): ``COLLAPSEWATCH_SERVER_URL``, ``…_WORKER_TOKEN``, ``…_BROKER_URL``,
``…_QUEUE_PREFIX``, ``…_WORKER_GPUS``, ``…_WORKER_CONCURRENCY``, ``…_HEARTBEAT_SECONDS``,
``…_WORKER_LOG_LEVEL``, ``…_DATA_DIR`` (holds the default SQLite broker). The broker URL and the queue
prefix must match the server's. The unprefixed names of earlier versions still work, with a warning.

Datasets (``worker.datasets``): ``…_DATASET_CACHE_DIR`` holds downloaded datasets by content hash
(default ``~/.cache/collapsewatch/datasets``); ``…_DATA_ROOTS`` names the directories that datasets
registered by reference may point into, e.g. ``imagenet=/data/imagenet,local=/srv/npz`` (none by
default). ``…_WORKER_TOKEN_FILE``: read the token from this file (docker-compose's init service).
"""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

# The task name and the queues by device class are part of the wire contract: a job with device "cpu"
# goes to ``cpu``, "cuda"/"cuda:N" to ``gpu`` and "auto" to ``default``, which every worker consumes
# (GPU workers train it on their GPU).
from collapsewatch.contract import QUEUE_CLASSES, TASK_NAME
from collapsewatch.envsettings import PrefixedSettings, load

__all__ = ["GPU_SLOTS_ENV", "QUEUE_CLASSES", "TASK_NAME", "WorkerSettings", "get_worker_settings"]
BROKER_FILE = "collapsewatch-broker.db"  # the server's default broker (app/settings.py), in DATA_DIR
DEFAULT_BROKER_URL = f"sqla+sqlite:///./{BROKER_FILE}"
# The comma list of GPU indices a worker's pool children are pinned to (set by ``collapsewatch worker``
# for Celery's children; "" hides every GPU). Unset: CUDA_VISIBLE_DEVICES is left alone.
GPU_SLOTS_ENV = "COLLAPSEWATCH_GPU_SLOTS"


class WorkerSettings(PrefixedSettings):
    """Settings of ``collapsewatch worker``: ``COLLAPSEWATCH_`` + the upper-case field name."""

    data_dir: Path | None = Field(None, description="the embedded set-up's folder (default broker inside)")
    server_url: str = Field("http://127.0.0.1:8000", description="base URL of the collapsewatch server")
    worker_token: str | None = Field(None, description="worker token (ingestion only) for the server API")
    worker_token_file: Path | None = Field(
        None, description="file holding the worker token (read when WORKER_TOKEN is unset; compose's init)"
    )
    broker_url: str = Field(DEFAULT_BROKER_URL, description="Celery broker: redis://... or sqla+sqlite://...")
    queue_prefix: str = Field("", pattern=r"^[A-Za-z0-9_.\-]{0,64}$", description="prefix of queue names")
    worker_gpus: str = Field("none", description="'none', 'auto' or a comma list of GPU indices, e.g. 0,1")
    worker_concurrency: int = Field(1, ge=1, le=256, description="parallel CPU jobs when no GPU is used")
    heartbeat_seconds: float = Field(10.0, gt=0.0, le=3600.0, description="upper bound between heartbeats")
    worker_log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    dataset_cache_dir: Path = Field(
        Path("~/.cache/collapsewatch/datasets"),
        description="downloaded datasets, by sha256",
    )
    data_roots: str = Field(
        "",
        description="name=directory pairs, comma-separated: where datasets registered by reference live",
    )

    @field_validator("data_roots")
    @classmethod
    def _roots(cls, value: str) -> str:
        parse_data_roots(value)
        return value

    def data_root_dirs(self) -> dict[str, Path]:
        """``COLLAPSEWATCH_DATA_ROOTS`` as ``{name: directory}``."""
        return parse_data_roots(self.data_roots)

    @field_validator("worker_gpus")
    @classmethod
    def _gpus(cls, value: str) -> str:
        parse_gpus(value)
        return value

    @field_validator("server_url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"{value!r} must start with http:// or https://")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _token_from_file(self) -> WorkerSettings:
        """``…_WORKER_TOKEN`` wins; otherwise the token is read from ``…_WORKER_TOKEN_FILE``."""
        if not self.worker_token and self.worker_token_file is not None:
            try:
                token = self.worker_token_file.read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise ValueError(
                    f"COLLAPSEWATCH_WORKER_TOKEN_FILE {str(self.worker_token_file)!r} cannot be read "
                    f"({exc.strerror}); point it at the file the init service wrote, or set "
                    "COLLAPSEWATCH_WORKER_TOKEN"
                ) from None
            if not token:
                raise ValueError(f"COLLAPSEWATCH_WORKER_TOKEN_FILE {str(self.worker_token_file)!r} is empty")
            self.worker_token = token
        return self

    @model_validator(mode="after")
    def _data_dir(self) -> WorkerSettings:
        if self.data_dir is not None:
            self.data_dir = self.data_dir.expanduser().resolve()
            if "broker_url" not in self.model_fields_set:
                self.broker_url = f"sqla+sqlite:///{self.data_dir / BROKER_FILE}"
        return self

    def queue_name(self, device_class: str) -> str:
        return f"{self.queue_prefix}{device_class}"


def parse_gpus(value: str) -> list[str] | Literal["auto"]:
    """``"none"`` -> [], ``"auto"`` -> "auto", ``"0,1"`` -> ["0", "1"]; anything else is a ValueError."""
    text = value.strip().lower()
    if text in ("", "none", "cpu"):
        return []
    if text == "auto":
        return "auto"
    parts = [p.strip() for p in text.split(",")]
    if not all(p.isdigit() for p in parts) or len(set(parts)) != len(parts):
        raise ValueError(f"gpus: {value!r} is not allowed; use 'none', 'auto' or distinct indices like '0,1'")
    return parts


ROOT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")


def parse_data_roots(value: str) -> dict[str, Path]:
    """``"imagenet=/data/imagenet,local=/srv/npz"`` -> ``{"imagenet": Path(...), ...}``; the names are
    what dataset references start with, the directories absolute (``~`` expanded)."""
    roots: dict[str, Path] = {}
    for item in (part.strip() for part in value.split(",")):
        if not item:
            continue
        name, sep, directory = (text.strip() for text in item.partition("="))
        path = Path(directory).expanduser()
        if not sep or not ROOT_NAME.match(name) or not path.is_absolute():
            raise ValueError(
                f"data roots: {item!r} is not allowed; give name=/absolute/dir pairs separated by commas, "
                "e.g. imagenet=/data/imagenet,local=/srv/npz (names: letters, digits, '.', '_', '-')"
            )
        if name in roots:
            raise ValueError(f"data roots: {name!r} is named twice")
        roots[name] = path
    return roots


@functools.lru_cache
def get_worker_settings() -> WorkerSettings:
    """The process-wide settings (cached); a bad value raises SettingsError naming its variable."""
    return load(WorkerSettings)
