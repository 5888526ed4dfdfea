"""Run lifecycle: ``archived_at`` (hidden from lists, restorable), ``deleted_at``/``deleted_by`` (the
trash, purged after ``TRASH_RETENTION_DAYS``), a partial index for the default listing of live runs.

Revision ID: 0008_run_lifecycle
Revises: 0007_epoch_layers
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008_run_lifecycle"
down_revision: str | None = "0007_epoch_layers"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

LIVE = sa.text("archived_at IS NULL AND deleted_at IS NULL")


def upgrade() -> None:
    # Plain ADD COLUMN and CREATE INDEX: no table rebuild on SQLite (a rebuild of `runs` would have
    # to drop it, which cascades to its epochs while foreign keys are on). deleted_by is a plain
    # user id (no foreign key), so the downgrade can drop it without a rebuild either.
    op.add_column("runs", sa.Column("archived_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("runs", sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("runs", sa.Column("deleted_by", sa.Integer(), nullable=True))
    op.create_index(
        "ix_runs_live_project_id",
        "runs",
        ["project_id", "id"],
        sqlite_where=LIVE,
        postgresql_where=LIVE,
    )
    op.create_index("ix_runs_deleted_at", "runs", ["deleted_at"])


def downgrade() -> None:
    op.drop_index("ix_runs_deleted_at", table_name="runs")
    op.drop_index("ix_runs_live_project_id", table_name="runs")
    op.drop_column("runs", "deleted_by")
    op.drop_column("runs", "deleted_at")
    op.drop_column("runs", "archived_at")
