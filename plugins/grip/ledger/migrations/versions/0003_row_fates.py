"""Source rows set aside for a reason not tied to a record: a sync skips them while unchanged."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "grip_row_fates",
        sa.Column("integration", sa.String(64), primary_key=True),
        sa.Column("data_type", sa.String(64), primary_key=True),
        sa.Column("source_hash", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("registration_id", sa.String(255)),
        sa.Column("reasons", sa.Text, nullable=False),
        sa.Column("run_id", sa.Integer),
    )


def downgrade() -> None:
    op.drop_table("grip_row_fates")
