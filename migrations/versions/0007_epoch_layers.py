"""Per-layer collapse statistics: a JSON column ``layers`` on epochs ({name: stats}, NULL = none).

Revision ID: 0007_epoch_layers
Revises: 0006_sdk_run_identity
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0007_epoch_layers'
down_revision: str | None = '0006_sdk_run_identity'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('epochs') as batch:
        batch.add_column(sa.Column('layers', sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('epochs') as batch:
        batch.drop_column('layers')
