"""The last whole read of each data type: records present since then need no write per run."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "grip_seen",
        sa.Column("integration", sa.String(64), primary_key=True),
        sa.Column("data_type", sa.String(64), primary_key=True),
        sa.Column("run_id", sa.Integer, nullable=False),
        sa.Column("seen_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("grip_seen")
