"""Settings of the worker deployable (one pydantic-settings class, read through a cached getter).

Environment variables (or a ``.env``): ``SERVER_URL``, ``WORKER_TOKEN`` (or ``WORKER_TOKEN_FILE``),
``BROKER_URL``, ``QUEUE_PREFIX``, ``WORKER_GPUS``, ``WORKER_CONCURRENCY``, ``HEARTBEAT_SECONDS``,
``WORKER_LOG_LEVEL``. ``BROKER_URL`` and ``QUEUE_PREFIX`` must match the server's.

Datasets (``worker.datasets``): ``COLLAPSEWATCH_DATASET_CACHE_DIR`` holds downloaded datasets by
content hash (default ``~/.cache/collapsewatch/datasets``); ``COLLAPSEWATCH_DATA_ROOTS`` names the
directories that datasets registered by reference may point into, e.g.
``imagenet=/data/imagenet,local=/srv/npz`` (none by default).
"""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# The task name and the queues by device class are part of the wire contract: a job with device "cpu"
# goes to ``cpu``, "cuda"/"cuda:N" to ``gpu`` and "auto" to ``default``, which every worker consumes
# (GPU workers train it on their GPU).
from collapsewatch.contract import QUEUE_CLASSES, TASK_NAME

__all__ = ["GPU_SLOTS_ENV", "QUEUE_CLASSES", "TASK_NAME", "WorkerSettings", "get_worker_settings"]
DEFAULT_BROKER_URL = "sqla+sqlite:///./collapsewatch-broker.db"
# The comma list of GPU indices a worker's pool children are pinned to (set by ``collapsewatch worker``
# for Celery's children; "" hides every GPU). Unset: CUDA_VISIBLE_DEVICES is left alone.
GPU_SLOTS_ENV = "COLLAPSEWATCH_GPU_SLOTS"


class WorkerSettings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

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
        validation_alias=AliasChoices("COLLAPSEWATCH_DATASET_CACHE_DIR", "dataset_cache_dir"),
        description="downloaded datasets, by sha256",
    )
    data_roots: str = Field(
        "",
        validation_alias=AliasChoices("COLLAPSEWATCH_DATA_ROOTS", "data_roots"),
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
        """``WORKER_TOKEN`` wins; otherwise the token is read from ``WORKER_TOKEN_FILE``."""
        if not self.worker_token and self.worker_token_file is not None:
            try:
                token = self.worker_token_file.read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise ValueError(
                    f"WORKER_TOKEN_FILE {str(self.worker_token_file)!r} cannot be read ({exc.strerror}); "
                    "point it at the file the init service wrote, or set WORKER_TOKEN"
                ) from None
            if not token:
                raise ValueError(f"WORKER_TOKEN_FILE {str(self.worker_token_file)!r} is empty")
            self.worker_token = token
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
    return WorkerSettings()
