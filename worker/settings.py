"""Settings of the worker deployable (one pydantic-settings class, read through a cached getter).

Environment variables (or an env file named by ``--env-file`` / ``COLLAPSEWATCH_ENV_FILE``; see
:mod:`collapsewatch.envsettings`): ``COLLAPSEWATCH_SERVER_URL``, ``…_WORKER_TOKEN``, ``…_BROKER_URL``,
``…_QUEUE_PREFIX``, ``…_WORKER_GPUS``, ``…_WORKER_CONCURRENCY``, ``…_HEARTBEAT_SECONDS``,
``…_WORKER_LOG_LEVEL``, ``…_DATA_DIR`` (holds the default SQLite broker). The broker URL and the queue
prefix must match the server's. The unprefixed names of earlier versions still work, with a warning.
"""

from __future__ import annotations

import functools
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
    broker_url: str = Field(DEFAULT_BROKER_URL, description="Celery broker: redis://... or sqla+sqlite://...")
    queue_prefix: str = Field("", pattern=r"^[A-Za-z0-9_.\-]{0,64}$", description="prefix of queue names")
    worker_gpus: str = Field("none", description="'none', 'auto' or a comma list of GPU indices, e.g. 0,1")
    worker_concurrency: int = Field(1, ge=1, le=256, description="parallel CPU jobs when no GPU is used")
    heartbeat_seconds: float = Field(10.0, gt=0.0, le=3600.0, description="upper bound between heartbeats")
    worker_log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

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


@functools.lru_cache
def get_worker_settings() -> WorkerSettings:
    """The process-wide settings (cached); a bad value raises SettingsError naming its variable."""
    return load(WorkerSettings)
