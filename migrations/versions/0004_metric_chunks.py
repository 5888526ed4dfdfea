"""Packed SDK scalars per (run, key, 256-step chunk), filled from the existing metrics rows.

Revision ID: 0004_metric_chunks
Revises: 0003_accounts
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import numpy as np
import sqlalchemy as sa
from alembic import op

revision: str = '0004_metric_chunks'
down_revision: str | None = '0003_accounts'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CHUNK_BITS = 8  # as app.series.chunks at this revision (frozen here on purpose)


def upgrade() -> None:
    chunks = op.create_table('metric_chunks',
    sa.Column('run_id', sa.Integer(), nullable=False),
    sa.Column('key', sa.String(length=128), nullable=False),
    sa.Column('chunk', sa.BigInteger(), autoincrement=False, nullable=False),
    sa.Column('n', sa.Integer(), nullable=False),
    sa.Column('steps', sa.LargeBinary(), nullable=False),
    sa.Column('vals', sa.LargeBinary(), nullable=False),
    sa.ForeignKeyConstraint(
        ['run_id'], ['runs.id'], name=op.f('fk_metric_chunks_run_id_runs'), ondelete='CASCADE'
    ),
    sa.PrimaryKeyConstraint('run_id', 'key', 'chunk', name=op.f('pk_metric_chunks'))
    )
    _backfill(chunks)


def _backfill(chunks: sa.Table) -> None:
    """A chunk row per (run, key, step >> 8) of the metrics: int64 steps, float64 values (NaN = NULL)."""
    bind = op.get_bind()
    rows = bind.execute(sa.text(
        'SELECT run_id, key, step, value FROM metrics ORDER BY run_id, key, step'
    ))
    group: tuple[int, str, int] | None = None
    steps: list[int] = []
    values: list[float] = []
    pending: list[dict[str, object]] = []

    def close_group() -> None:
        if group is not None and steps:
            pending.append(dict(
                run_id=group[0], key=group[1], chunk=group[2], n=len(steps),
                steps=np.array(steps, dtype='<i8').tobytes(),
                vals=np.array(values, dtype='<f8').tobytes(),
            ))

    for run_id, key, step, value in rows:
        here = (int(run_id), key, int(step) >> CHUNK_BITS)
        if here != group:
            close_group()
            if len(pending) >= 500:
                bind.execute(chunks.insert(), pending)
                pending.clear()
            group, steps, values = here, [], []
        steps.append(int(step))
        values.append(np.nan if value is None else float(value))
    close_group()
    if pending:
        bind.execute(chunks.insert(), pending)


def downgrade() -> None:
    op.drop_table('metric_chunks')
