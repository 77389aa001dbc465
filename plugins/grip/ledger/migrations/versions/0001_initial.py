"""The first ledger: integrations, decisions, records, runs, chunks, problems, files, watermarks."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "grip_integrations",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("stage", sa.String(32), nullable=False),
        sa.Column("sample_run_id", sa.Integer),
        sa.Column("sample_fingerprint", sa.String(128)),
        sa.Column("approved_fingerprint", sa.String(128)),
        sa.Column("decided_by", sa.String(200)),
        sa.Column("decided_at", _TS),
        sa.Column("decision_comment", sa.Text),
        sa.Column("live_since", _TS),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("updated_at", _TS, nullable=False),
    )
    op.create_table(
        "grip_decisions",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("integration", sa.String(64), nullable=False, index=True),
        sa.Column("approved", sa.Boolean, nullable=False),
        sa.Column("fingerprint", sa.String(128)),
        sa.Column("sample_run_id", sa.Integer),
        sa.Column("decided_by", sa.String(200), nullable=False),
        sa.Column("decided_at", _TS, nullable=False),
        sa.Column("comment", sa.Text),
    )
    op.create_table(
        "grip_records",
        sa.Column("integration", sa.String(64), primary_key=True),
        sa.Column("data_type", sa.String(64), primary_key=True),
        sa.Column("registration_id", sa.String(255), primary_key=True),
        sa.Column("accepted_hash", sa.String(64)),
        sa.Column("accepted_payload", sa.LargeBinary),
        sa.Column("sent_hash", sa.String(64)),
        sa.Column("grip_id", sa.BigInteger),
        sa.Column("last_outcome", sa.String(16)),
        sa.Column("last_reason", sa.Text),
        sa.Column("last_status", sa.Integer),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("first_pushed_at", _TS),
        sa.Column("last_pushed_at", _TS),
        sa.Column("last_run_id", sa.Integer),
        sa.Column("last_seen_run_id", sa.Integer),
        sa.Column("vanished_run_id", sa.Integer),
        sa.Column("source_row", sa.BigInteger),
    )
    op.create_table(
        "grip_runs",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("integration", sa.String(64), nullable=False),
        sa.Column("stage", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("label", sa.String(250)),
        sa.Column("started_at", _TS, nullable=False),
        sa.Column("ended_at", _TS),
        sa.Column("heartbeat_at", _TS),
        sa.Column("fingerprint", sa.String(128)),
        sa.Column("host", sa.String(255)),
        sa.Column("pid", sa.Integer),
        *(
            sa.Column(name, sa.Integer, nullable=False)
            for name in (
                "read",
                "filtered",
                "invalid",
                "planned_new",
                "planned_changed",
                "planned_unchanged",
                "planned_retry",
                "planned_held",
                "vanished",
                "to_push",
                "created",
                "updated",
                "rejected",
                "failed",
                "chunks",
            )
        ),
        sa.Column("work_dir", sa.Text),
        sa.Column("report_dir", sa.Text),
        sa.Column("message", sa.Text),
        sa.Column("details", sa.JSON, nullable=False),
    )
    op.create_index("ix_grip_runs_integration_started", "grip_runs", ["integration", "started_at"])
    op.create_table(
        "grip_run_chunks",
        sa.Column("run_id", sa.Integer, primary_key=True),
        sa.Column("chunk_no", sa.Integer, primary_key=True),
        sa.Column("path", sa.Text, nullable=False),
        sa.Column("rows", sa.Integer, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created", sa.Integer, nullable=False),
        sa.Column("updated", sa.Integer, nullable=False),
        sa.Column("rejected", sa.Integer, nullable=False),
        sa.Column("failed", sa.Integer, nullable=False),
        sa.Column("requests", sa.Integer, nullable=False),
        sa.Column("started_at", _TS),
        sa.Column("ended_at", _TS),
        sa.Column("seconds", sa.Float, nullable=False),
    )
    op.create_table(
        "grip_run_problems",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("run_id", sa.Integer, nullable=False),
        sa.Column("data_type", sa.String(64), nullable=False),
        sa.Column("registration_id", sa.String(255)),
        sa.Column("source_row", sa.BigInteger),
        sa.Column("step", sa.String(16), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("status", sa.Integer),
        sa.Column("reasons", sa.Text, nullable=False),
    )
    op.create_index("ix_grip_run_problems_run", "grip_run_problems", ["run_id"])
    op.create_table(
        "grip_run_files",
        sa.Column("run_id", sa.Integer, primary_key=True),
        sa.Column("data_type", sa.String(64), primary_key=True),
        sa.Column("name", sa.String(1000), primary_key=True),
        sa.Column("integration", sa.String(64), nullable=False, index=True),
        sa.Column("size", sa.BigInteger),
        sa.Column("mtime", sa.Float),
        sa.Column("sha256", sa.String(64)),
        sa.Column("committed", sa.Boolean, nullable=False),
    )
    op.create_table(
        "grip_watermarks",
        sa.Column("integration", sa.String(64), primary_key=True),
        sa.Column("data_type", sa.String(64), primary_key=True),
        sa.Column("value", sa.Text),
        sa.Column("run_id", sa.Integer),
        sa.Column("updated_at", _TS, nullable=False),
    )


def downgrade() -> None:
    for table in (
        "grip_watermarks",
        "grip_run_files",
        "grip_run_problems",
        "grip_run_chunks",
        "grip_runs",
        "grip_records",
        "grip_decisions",
        "grip_integrations",
    ):
        op.drop_table(table)
