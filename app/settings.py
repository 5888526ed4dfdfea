"""Server settings: one pydantic-settings class, read from ``COLLAPSEWATCH_<FIELD>`` environment
variables or an env file the user names (see :mod:`collapsewatch.envsettings`: the unprefixed names of
earlier versions still work, with a deprecation warning).

Use :func:`get_settings` (cached) everywhere; tests build their own :class:`Settings` and pass it to
``create_app(settings)``.
"""

from __future__ import annotations

import os
import re
import secrets
from datetime import timedelta
from functools import lru_cache
from pathlib import Path

from pydantic import Field, SecretStr, field_validator, model_validator

from collapsewatch.envsettings import PrefixedSettings, load

MIB = 1024 * 1024


# The embedded set-up's files, relative to the working directory or to DATA_DIR.
DATABASE_FILE = "collapsewatch.db"
BROKER_FILE = "collapsewatch-broker.db"
ARTIFACTS = "artifacts"


class Settings(PrefixedSettings):
    """Settings of the collapsewatch server: ``COLLAPSEWATCH_`` + the upper-case field name."""

    # DATA_DIR (``collapsewatch up --data DIR``) holds the SQLite database, the SQLite broker and the
    # artifacts, unless DATABASE_URL, BROKER_URL or ARTIFACT_DIR name a place of their own.
    data_dir: Path | None = None
    database_url: str = f"sqlite:///./{DATABASE_FILE}"
    broker_url: str = f"sqla+sqlite:///./{BROKER_FILE}"
    redis_url: str | None = None
    queue_prefix: str = ""
    artifact_dir: Path = Path(".") / ARTIFACTS
    secret_key: SecretStr = SecretStr("")
    public_url: str = "http://127.0.0.1:8000"
    lease_seconds: int = Field(60, ge=1, le=86_400)
    max_attempts: int = Field(3, ge=1, le=100)
    max_body_bytes: int = Field(MIB, ge=1024)
    max_checkpoint_bytes: int = Field(512 * MIB, ge=1024)
    # Dataset uploads (app/datasets): the .npz file, and its arrays uncompressed, at most this size.
    max_dataset_bytes: int = Field(256 * MIB, ge=1024)
    auto_migrate: bool = True
    sqlite_busy_timeout_ms: int = Field(30_000, ge=0)
    admin_email: str = "admin@localhost"
    # Dashboard local mode: a browser without a session is signed in as the local admin. Unset = on
    # for the embedded SQLite set-up (`collapsewatch up`), off for PostgreSQL (team mode).
    local_autologin: bool | None = None
    # Job queue (app/queue.py, app/maintenance.py): queue names are QUEUE_PREFIX + cpu|gpu|default
    # (the workers use the same prefix); the reaper/sweeper loop ticks every MAINTENANCE_INTERVAL_SECONDS
    # (0 = not in this process; run `collapsewatch beat`), re-sending runs queued for SWEEP_AFTER_SECONDS.
    maintenance_interval_seconds: float = Field(5.0, ge=0.0, le=3600.0)
    sweep_after_seconds: float = Field(60.0, gt=0.0, le=86_400.0)
    # The trash (app/runs/bulk.py): deleted runs, with their checkpoints, are purged by the same loop
    # TRASH_RETENTION_DAYS after their deletion (0 = never on its own; owners purge by hand).
    trash_retention_days: float = Field(30.0, ge=0.0, le=36_500.0)
    # Per-caller API rate limit (app/ratelimit.py): a token bucket per API token or signed-in user,
    # API_RATE_LIMIT_BURST at once, refilled at API_RATE_LIMIT_PER_SECOND (0 = no limit) -> 429.
    api_rate_limit_per_second: float = Field(100.0, ge=0.0, le=1e6)
    api_rate_limit_burst: int = Field(1000, ge=1, le=10**7)
    # Heavy reads (chart pages, series, exports; app/deps.py heavy_read_slot): at most this many at
    # once per server process, the rest wait their turn (0 = no limit).
    heavy_read_concurrency: int = Field(2, ge=0, le=1000)
    # Resident memory (app/memory.py): at most MALLOC_ARENA_MAX glibc malloc arenas (glibc's own
    # variable; 0 = glibc's default of 8 per core) and malloc_trim every MEMORY_TRIM_SECONDS (0 = never).
    malloc_arena_max: int = Field(2, ge=0, le=1024)
    memory_trim_seconds: float = Field(60.0, ge=0.0, le=86_400.0)
    # Artifact store (app/runs/storage.py): checkpoints (and uploaded datasets) live under
    # ARTIFACT_DIR by default; ARTIFACT_STORE=s3://bucket/prefix keeps them in an S3-compatible
    # bucket instead (web replicas on several hosts), reached at S3_ENDPOINT_URL (empty = AWS) with
    # S3_ACCESS_KEY_ID / S3_SECRET_ACCESS_KEY (empty = boto3's own lookup: env, profile, IAM role).
    artifact_store: str = ""
    s3_endpoint_url: str = ""
    s3_region: str = ""
    s3_access_key_id: str = ""
    s3_secret_access_key: SecretStr = SecretStr("")

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: str) -> str:
        if value.startswith("postgres://"):
            value = "postgresql://" + value.removeprefix("postgres://")
        if value.startswith("postgresql://"):
            value = "postgresql+psycopg://" + value.removeprefix("postgresql://")
        if not value.startswith(("sqlite:", "postgresql+psycopg:")):
            raise ValueError("must be sqlite:///PATH or postgresql+psycopg://…")
        return value

    @field_validator("artifact_store")
    @classmethod
    def _artifact_store(cls, value: str) -> str:
        value = value.strip()
        if value and not re.fullmatch(r"s3://[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9](/[^\s]*)?", value):
            raise ValueError(
                f"COLLAPSEWATCH_ARTIFACT_STORE {value!r} is not allowed; leave it empty (files under "
                "COLLAPSEWATCH_ARTIFACT_DIR) "
                "or give s3://BUCKET[/PREFIX] (bucket: 3-63 lower-case letters, digits, dots, hyphens)"
            )
        return value

    @model_validator(mode="after")
    def _data_dir(self) -> Settings:
        if self.data_dir is None:
            return self
        root = self.data_dir.expanduser().resolve()
        self.data_dir = root
        if "database_url" not in self.model_fields_set:
            self.database_url = f"sqlite:///{root / DATABASE_FILE}"
        if "broker_url" not in self.model_fields_set:
            self.broker_url = f"sqla+sqlite:///{root / BROKER_FILE}"
        if "artifact_dir" not in self.model_fields_set:
            self.artifact_dir = root / ARTIFACTS
        return self

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def trash_retention(self) -> timedelta | None:
        """How long deleted runs stay in the trash (None: until an owner purges them)."""
        days = self.trash_retention_days
        return timedelta(days=days) if days > 0 else None

    @property
    def redis_prefix(self) -> str:
        """Prefix of this deployment's Redis keys and channels (rate limits, live events): deployments
        sharing one Redis are kept apart by their QUEUE_PREFIX, like their queues."""
        return f"collapsewatch:{self.queue_prefix}" if self.queue_prefix else "collapsewatch"

    def resolved_secret_key(self) -> str:
        """``COLLAPSEWATCH_SECRET_KEY``, or a random key persisted (mode 0600) under ``ARTIFACT_DIR``."""
        value = self.secret_key.get_secret_value()
        if value:
            return value
        path = self.artifact_dir / ".secret_key"
        if path.exists():
            return path.read_text().strip()
        path.parent.mkdir(parents=True, exist_ok=True)
        key = secrets.token_urlsafe(48)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(key)
        return key


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings (cached; call ``get_settings.cache_clear()`` after changing env).
    Raises :class:`collapsewatch.envsettings.SettingsError` naming the variable of a bad value."""
    return load(Settings)
