"""Alembic environment: the URL comes from the app settings unless a connection is handed in."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from app.migrate import include_object
from app.models import import_all_models

config = context.config
target_metadata = import_all_models()


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        include_object=include_object,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    from app.db import make_engine
    from app.settings import Settings, get_settings

    url = config.get_main_option("sqlalchemy.url")
    settings = Settings(database_url=url) if url else get_settings()
    engine = make_engine(settings)
    try:
        with engine.connect() as conn:
            _run(conn)
    finally:
        engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline (--sql) migrations are not supported; run against a database")
run_migrations_online()
