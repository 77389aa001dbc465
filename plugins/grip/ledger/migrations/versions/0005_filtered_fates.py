"""Row fates of rows a filter left out, beside those validation set aside."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "grip_row_fates",
        sa.Column("outcome", sa.String(16), nullable=False, server_default="invalid"),
    )


def downgrade() -> None:
    with op.batch_alter_table("grip_row_fates") as batch:
        batch.drop_column("outcome")
