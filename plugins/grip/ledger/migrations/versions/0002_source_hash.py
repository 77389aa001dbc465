"""Records keep the hash of the source row they were mapped from: a sync skips unchanged rows."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("grip_records") as batch:
        batch.add_column(sa.Column("source_hash", sa.BigInteger, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("grip_records") as batch:
        batch.drop_column("source_hash")
