"""SDK runs: ``client_id`` (idempotent create and offline sync, unique per project) and ``provenance``.

Revision ID: 0006_sdk_run_identity
Revises: 0005_datasets
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0006_sdk_run_identity'
down_revision: str | None = '0005_datasets'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Plain ADD COLUMN and CREATE INDEX: no table rebuild on SQLite (a rebuild of `runs` would have
    # to drop it, which cascades to its epochs while foreign keys are on).
    op.add_column('runs', sa.Column('client_id', sa.String(length=64), nullable=True))
    op.add_column('runs', sa.Column('provenance', sa.JSON(), nullable=True))
    op.create_index('ix_runs_project_client', 'runs', ['project_id', 'client_id'], unique=True)


def downgrade() -> None:
    op.drop_index('ix_runs_project_client', table_name='runs')
    op.drop_column('runs', 'provenance')
    op.drop_column('runs', 'client_id')
