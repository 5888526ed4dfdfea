"""SQLAlchemy 2 ORM models (the storage layer). Wire schemas live in ``app/schemas.py``."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every dialect (SQLite stores naive UTC text)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime; use timezone-aware UTC datetimes")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSON(), list[Any]: JSON()}


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    password_hash: Mapped[str | None] = mapped_column(String(255))
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ApiToken(Base):
    """A bearer token, stored as the sha256 of the secret; only ``prefix`` is ever shown again."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(16))  # "user" | "worker"
    prefix: Mapped[str] = mapped_column(String(16))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]


class Project(Base):
    __tablename__ = "projects"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ProjectMember(Base):
    __tablename__ = "project_members"

    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True)
    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    role: Mapped[str] = mapped_column(String(16))  # "viewer" | "editor" | "owner"
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Run(Base):
    __tablename__ = "runs"
    __table_args__ = (
        Index("ix_runs_project_created", "project_id", "created_at"),
        Index("ix_runs_status_lease", "status", "lease_until"),
        Index("ix_runs_sweep_id", "sweep_id"),
        Index("ix_runs_owner_id", "owner_id"),
        Index("ix_runs_project_client", "project_id", "client_id", unique=True),
        # the default listing (neither archived nor deleted; app.runs.visibility) and the trash
        Index(
            "ix_runs_live_project_id",
            "project_id",
            "id",
            sqlite_where=text("archived_at IS NULL AND deleted_at IS NULL"),
            postgresql_where=text("archived_at IS NULL AND deleted_at IS NULL"),
        ),
        Index("ix_runs_deleted_at", "deleted_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    name: Mapped[str | None] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(8))  # "job" | "sdk"
    config: Mapped[dict[str, Any]] = mapped_column(default=dict)
    status: Mapped[str] = mapped_column(String(16))
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer, default=3)
    lease_until: Mapped[datetime | None]
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    sweep_id: Mapped[str | None] = mapped_column(String(32))
    tags: Mapped[list[Any]] = mapped_column(default=list)
    owner_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    worker: Mapped[dict[str, Any] | None]
    error: Mapped[str | None] = mapped_column(Text)
    summary: Mapped[dict[str, Any]] = mapped_column(default=dict)
    last_epoch: Mapped[int | None] = mapped_column(Integer)
    client_id: Mapped[str | None] = mapped_column(String(64))  # SDK runs: idempotent create / sync
    provenance: Mapped[dict[str, Any] | None]  # SDK runs: git commit, command, versions, host
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    # lifecycle (app.runs.bulk): archived runs are hidden from lists; deleted ones wait in the trash
    archived_at: Mapped[datetime | None]
    deleted_at: Mapped[datetime | None]
    deleted_by: Mapped[int | None] = mapped_column(Integer)  # the user's id then (no foreign key)

    project: Mapped[Project] = relationship(lazy="joined", innerjoin=True)


EPOCH_STAT_COLUMNS: tuple[str, ...] = (
    "mean_sv",
    "sv_lower",
    "sv_upper",
    "sv_position",
    "effective_rank",
    "dead_dims",
    "cov_offdiag",
    "l2_std",
)
"""The chartable collapse statistics that ``Epoch`` stores as real columns (DESIGN.md §3)."""


class Epoch(Base):
    """One epoch of collapse statistics; chartable statistics are real columns."""

    __tablename__ = "epochs"
    __table_args__ = (UniqueConstraint("run_id", "epoch"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    epoch: Mapped[int] = mapped_column(Integer)
    attempt: Mapped[int] = mapped_column(Integer)
    mean_sv: Mapped[float | None] = mapped_column(Float)
    sv_lower: Mapped[float | None] = mapped_column(Float)
    sv_upper: Mapped[float | None] = mapped_column(Float)
    sv_position: Mapped[float | None] = mapped_column(Float)
    effective_rank: Mapped[float | None] = mapped_column(Float)
    dead_dims: Mapped[int | None] = mapped_column(Integer)
    cov_offdiag: Mapped[float | None] = mapped_column(Float)
    l2_std: Mapped[float | None] = mapped_column(Float)
    metrics: Mapped[dict[str, Any]] = mapped_column(default=dict)
    std_hist: Mapped[dict[str, Any] | None]
    singular_values: Mapped[list[Any] | None]
    dim_std: Mapped[list[Any] | None]
    recorded_at: Mapped[datetime] = mapped_column(default=utcnow)
    # per-layer statistics, {layer name: the collapse_stats dict}; NULL when none were logged
    layers: Mapped[dict[str, Any] | None]


class Metric(Base):
    """A free scalar logged by the SDK; ``value`` NULL means "not finite / not available"."""

    __tablename__ = "metrics"
    __table_args__ = (UniqueConstraint("run_id", "key", "step"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(128))
    step: Mapped[int] = mapped_column(BigInteger)
    value: Mapped[float | None] = mapped_column(Float)
    attempt: Mapped[int] = mapped_column(Integer)


class MetricChunk(Base):
    """The SDK scalars of one (run, key) in steps ``[chunk * 256, chunk * 256 + 256)``, packed.

    A copy of the ``metrics`` rows kept in the same transaction (``app.series.chunks``): ``steps``
    are little-endian int64, ``vals`` float64 with NaN for NULL. Series queries read these instead
    of grouping every raw row.
    """

    __tablename__ = "metric_chunks"

    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    key: Mapped[str] = mapped_column(String(128), primary_key=True)
    chunk: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    n: Mapped[int] = mapped_column(Integer)
    steps: Mapped[bytes] = mapped_column(LargeBinary)
    vals: Mapped[bytes] = mapped_column(LargeBinary)


class RunEvent(Base):
    """Log lines, status changes and epoch notices; ``id`` only grows (SSE ``Last-Event-ID``)."""

    __tablename__ = "run_events"
    __table_args__ = (Index("ix_run_events_run_id_id", "run_id", "id"), {"sqlite_autoincrement": True})

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    type: Mapped[str] = mapped_column(String(16))  # "status" | "log" | "epoch"
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class IdFloor(Base):
    """The highest id a table ever handed out where the database could hand it out again: SQLite
    without AUTOINCREMENT gives ``max(id) + 1``, so purging the newest runs would free their ids for
    the next run of any project (``app.runs.ids``). PostgreSQL sequences never go back."""

    __tablename__ = "id_floors"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    value: Mapped[int] = mapped_column(BigInteger)


# Modules outside this file that declare tables on ``Base``: imported by the migration environment
# and the migration test so that autogenerate sees every table. Add yours here.
MODEL_MODULES: tuple[str, ...] = ("app.auth.sessions", "app.auth.models", "app.datasets.models")


def import_all_models() -> MetaData:
    """Import every module with models and return the complete metadata."""
    import importlib

    for name in MODEL_MODULES:
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
    return Base.metadata
