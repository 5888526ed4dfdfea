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
