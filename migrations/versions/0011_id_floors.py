"""id_floors: the highest run id ever purged, so SQLite never hands it to a new run (app/runs/ids.py).

Revision ID: 0011_id_floors
Revises: 0010_scale_indexes
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011_id_floors"
down_revision: str | None = "0010_scale_indexes"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "id_floors",
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("value", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_id_floors")),
    )


def downgrade() -> None:
    op.drop_table("id_floors")
