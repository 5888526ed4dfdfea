"""Apply the Alembic migrations in ``migrations/`` (start-up and ``collapsewatch db upgrade``).

``alembic.ini`` and ``migrations/`` ship with the server (:mod:`app.resources`); the database URL comes
from the settings (or the connection handed in), never from the ini file.
"""

from __future__ import annotations

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Engine, text

from app.db import WRITE_OPTION
from app.resources import shipped

# Created by migration 0010_scale_indexes on PostgreSQL only (GIN, INCLUDE and expression indexes the
# models do not declare): comparing the models with a database leaves them out.
_SUMMARY_SORTS = ("mean_sv", "sv_position", "effective_rank", "dead_dims", "best_val_acc", "best_recall_at_1")
POSTGRES_ONLY_INDEXES = frozenset(
    {"ix_epochs_run_stats", "ix_runs_tags_gin", "ix_runs_config_regularizer", "ix_runs_config_objective"}
    | {f"ix_runs_summary_{key}_{direction}" for key in _SUMMARY_SORTS for direction in ("asc", "desc")}
)


def include_object(obj: object, name: str | None, type_: str, reflected: bool, compare_to: object) -> bool:
    """Alembic's ``include_object`` hook: skip the PostgreSQL-only indexes of the migrations."""
    return not (type_ == "index" and reflected and name in POSTGRES_ONLY_INDEXES)


def alembic_config() -> Config:
    """The shipped ``alembic.ini`` (its ``script_location`` is the shipped ``migrations/``)."""
    config = Config(str(shipped("alembic.ini")))
    # The ini prepends "." (the working directory) to sys.path for the `alembic` command run in a
    # checkout; here the app is imported already, and a user's folder must not shadow it.
    config.remove_main_option("prepend_sys_path")
    return config


def _lock(connection: Connection) -> None:
    """Serialise concurrent upgrades (two processes starting at once)."""
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(7243911)"))


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Upgrade the database behind ``engine`` to ``revision`` (idempotent)."""
    config = alembic_config()
    with engine.execution_options(**{WRITE_OPTION: True}).begin() as connection:
        _lock(connection)
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


def downgrade(engine: Engine, revision: str = "base") -> None:
    config = alembic_config()
    with engine.execution_options(**{WRITE_OPTION: True}).begin() as connection:
        _lock(connection)
        config.attributes["connection"] = connection
        command.downgrade(config, revision)
