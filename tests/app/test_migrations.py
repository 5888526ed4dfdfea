"""The Alembic history matches the models and can be reverted, on SQLite and PostgreSQL."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from app.db import Database
from app.migrate import downgrade, include_object, upgrade
from app.models import import_all_models


def _diff(db: Database) -> list[object]:
    with db.engine.connect() as conn:
        opts = {"compare_type": True, "include_object": include_object}
        context = MigrationContext.configure(conn, opts=opts)
        return list(compare_metadata(context, import_all_models()))


def test_upgrade_head_matches_models_and_downgrade_base_drops_everything(database: Database) -> None:
    downgrade(database.engine, "base")  # the PostgreSQL database is shared: start from empty
    assert set(inspect(database.engine).get_table_names()) <= {"alembic_version"}
    upgrade(database.engine, "head")
    assert _diff(database) == []
    assert set(import_all_models().tables) <= set(inspect(database.engine).get_table_names())
    downgrade(database.engine, "base")
    assert set(inspect(database.engine).get_table_names()) <= {"alembic_version"}
    upgrade(database.engine, "head")  # leave it as the other tests expect
    assert _diff(database) == []


def test_upgrade_when_already_at_head_changes_nothing(database: Database) -> None:
    upgrade(database.engine)
    upgrade(database.engine)
    assert _diff(database) == []


def test_history_is_one_line_with_a_single_head() -> None:
    """Later changes add migrations: each must follow the last one (no branches, no merges)."""
    from alembic.script import ScriptDirectory

    from app.migrate import alembic_config

    script = ScriptDirectory.from_config(alembic_config())
    assert len(script.get_heads()) == 1, f"several heads: {script.get_heads()}"
    revisions = list(script.walk_revisions())
    assert len(revisions) >= 4
    for revision in revisions:
        down = revision.down_revision
        assert down is None or isinstance(down, str), f"{revision.revision} merges {down}"
    assert sum(r.down_revision is None for r in revisions) == 1
