"""Datasets of a project (uploads and data-root references); jobs that still name a free
``data_path`` and have not ended are failed with a message saying what to use instead.

Revision ID: 0005_datasets
Revises: 0004_metric_chunks
Create Date: 2026-12-02
"""

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision: str = '0005_datasets'
down_revision: str | None = '0004_metric_chunks'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen here on purpose (the app's wording may change later).
LEGACY_ERROR = (
    "data_path: free file paths are no longer accepted; upload the .npz as a dataset of the "
    "project and submit the job again with dataset_id"
)


def upgrade() -> None:
    op.create_table('datasets',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('project_id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('storage_name', sa.String(length=64), nullable=True),
    sa.Column('reference', sa.String(length=1024), nullable=True),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('size_bytes', sa.BigInteger(), nullable=True),
    sa.Column('summary', sa.JSON(), nullable=False),
    sa.Column('created_by', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['created_by'], ['users.id'], name=op.f('fk_datasets_created_by_users'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['project_id'], ['projects.id'], name=op.f('fk_datasets_project_id_projects'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_datasets')),
    sa.UniqueConstraint('storage_name', name=op.f('uq_datasets_storage_name'))
    )
    with op.batch_alter_table('datasets', schema=None) as batch_op:
        batch_op.create_index('ix_datasets_project_created', ['project_id', 'created_at'], unique=False)
    _fail_free_path_jobs()


def _fail_free_path_jobs() -> None:
    """Queued, running or lost jobs whose spec names a ``data_path`` would read a file of the worker's
    machine: they end ``failed`` (their configs stay as they were, for the record)."""
    runs = sa.table(
        'runs', sa.column('id', sa.Integer()), sa.column('status', sa.String()),
        sa.column('kind', sa.String()), sa.column('config', sa.JSON()), sa.column('error', sa.Text()),
        sa.column('lease_until', sa.DateTime(timezone=True)),
        sa.column('finished_at', sa.DateTime(timezone=True)),
        sa.column('updated_at', sa.DateTime(timezone=True)),
    )
    bind = op.get_bind()
    open_jobs = bind.execute(
        sa.select(runs.c.id, runs.c.config).where(
            runs.c.kind == 'job', runs.c.status.in_(['queued', 'running', 'lost'])
        )
    )
    ids = [row.id for row in open_jobs if isinstance(row.config, dict) and row.config.get('data_path')]
    if not ids:
        return
    now = datetime.now(UTC)
    if bind.dialect.name == 'sqlite':
        now = now.replace(tzinfo=None)
    bind.execute(
        runs.update().where(runs.c.id.in_(ids)).values(
            status='failed', error=LEGACY_ERROR, lease_until=None, finished_at=now, updated_at=now
        )
    )


def downgrade() -> None:
    with op.batch_alter_table('datasets', schema=None) as batch_op:
        batch_op.drop_index('ix_datasets_project_created')
    op.drop_table('datasets')
