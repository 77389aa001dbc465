"""The ledger's tables: integrations, records, runs and what each run touched."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# NOTE: every table is prefixed ``grip_`` and Alembic keeps its own version table, so the ledger
# can live in a database it shares with others (Airflow's metadata database, for instance).
VERSION_TABLE = "grip_ledger_version"


class Stage(StrEnum):
    """Where an integration stands in its onboarding."""

    NEW = "new"
    SAMPLE_PUSHED = "sample_pushed"
    AWAITING_APPROVAL = "awaiting_approval"
    APPROVED = "approved"
    LIVE = "live"
    SAMPLE_REJECTED = "sample_rejected"


class RunStage(StrEnum):
    """What a run does: push a sample, every valid record, or only what changed."""

    SAMPLE = "sample"
    FULL = "full"
    SYNC = "sync"


class RunStatus(StrEnum):
    """The state of a run; ``partial`` means it ended with records Grip rejected or that failed."""

    RUNNING = "running"
    SUCCEEDED = "succeeded"
    PARTIAL = "partial"
    FAILED = "failed"
    ABANDONED = "abandoned"


class RecordOutcome(StrEnum):
    """The last thing that happened to a record.

    ``invalid``: set aside by validation; ``unchanged``: valid again with the very content Grip
    accepted before, so nothing was sent.
    """

    CREATED = "created"
    UPDATED = "updated"
    REJECTED = "rejected"
    FAILED = "failed"
    INVALID = "invalid"
    UNCHANGED = "unchanged"


ACCEPTED = (RecordOutcome.CREATED.value, RecordOutcome.UPDATED.value)
HOLDS_ACCEPTED = (*ACCEPTED, RecordOutcome.UNCHANGED.value)
"""Last outcomes after which Grip holds exactly the record's accepted payload."""

FATE_INVALID = "invalid"
"""A row fate: validation set the row aside (see :class:`RowFateRow`)."""
FATE_FILTERED = "filtered"
"""A row fate: a filter of the mapping left the row out (see :class:`RowFateRow`)."""


def _now() -> datetime:
    from datetime import UTC

    return datetime.now(UTC)


class Base(DeclarativeBase):
    """Declarative base of the ledger's tables."""

    type_annotation_map = {
        dict[str, Any]: sa.JSON,
        datetime: sa.DateTime(timezone=True),
    }


class IntegrationRow(Base):
    """One integration: its stage and the approval decision that governs its pushes."""

    __tablename__ = "grip_integrations"

    name: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    stage: Mapped[str] = mapped_column(sa.String(32), default=Stage.NEW.value)
    sample_run_id: Mapped[int | None] = mapped_column(sa.Integer)
    sample_fingerprint: Mapped[str | None] = mapped_column(sa.String(128))
    approved_fingerprint: Mapped[str | None] = mapped_column(sa.String(128))
    decided_by: Mapped[str | None] = mapped_column(sa.String(200))
    decided_at: Mapped[datetime | None]
    decision_comment: Mapped[str | None] = mapped_column(sa.Text)
    live_since: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=_now)
    updated_at: Mapped[datetime] = mapped_column(default=_now, onupdate=_now)


class DecisionRow(Base):
    """Every approval or rejection ever recorded, oldest first; the integration keeps the last."""

    __tablename__ = "grip_decisions"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    integration: Mapped[str] = mapped_column(sa.String(64), index=True)
    approved: Mapped[bool]
    fingerprint: Mapped[str | None] = mapped_column(sa.String(128))
    sample_run_id: Mapped[int | None] = mapped_column(sa.Integer)
    decided_by: Mapped[str] = mapped_column(sa.String(200))
    decided_at: Mapped[datetime] = mapped_column(default=_now)
    comment: Mapped[str | None] = mapped_column(sa.Text)


class RecordRow(Base):
    """What Grip holds for one record, as far as this integration has pushed it."""

    __tablename__ = "grip_records"

    integration: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    data_type: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    registration_id: Mapped[str] = mapped_column(sa.String(255), primary_key=True)
    accepted_hash: Mapped[str | None] = mapped_column(sa.String(64))
    accepted_payload: Mapped[bytes | None] = mapped_column(sa.LargeBinary)
    sent_hash: Mapped[str | None] = mapped_column(sa.String(64))
    grip_id: Mapped[int | None] = mapped_column(sa.BigInteger)
    last_outcome: Mapped[str | None] = mapped_column(sa.String(16))
    last_reason: Mapped[str | None] = mapped_column(sa.Text)
    last_status: Mapped[int | None] = mapped_column(sa.Integer)
    attempts: Mapped[int] = mapped_column(sa.Integer, default=0)
    first_pushed_at: Mapped[datetime | None]
    last_pushed_at: Mapped[datetime | None]
    last_run_id: Mapped[int | None] = mapped_column(sa.Integer)
    # NOTE: last_seen_run_id is written when the record is, and when it vanishes; while
    # vanished_run_id is null, the data type's latest whole read (grip_seen) saw it as well.
    # Ledger.record() gives the effective value.
    last_seen_run_id: Mapped[int | None] = mapped_column(sa.Integer)
    vanished_run_id: Mapped[int | None] = mapped_column(sa.Integer)
    source_row: Mapped[int | None] = mapped_column(sa.BigInteger)
    source_hash: Mapped[int | None] = mapped_column(sa.BigInteger)


class RowFateRow(Base):
    """A source row set aside for a reason that is not a record's own.

    ``invalid``: validation set it aside for lacking a registration_id or repeating the id of
    an earlier row (``reasons`` says which). ``filtered``: a filter of the mapping left it out
    (``reasons`` names the filter). Kept by the hash of the source row, so that a sync can set
    it aside again without mapping it while it does not change (a repeated id is checked again
    against the run's keys).
    """

    __tablename__ = "grip_row_fates"

    integration: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    data_type: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    source_hash: Mapped[int] = mapped_column(sa.BigInteger, primary_key=True, autoincrement=False)
    registration_id: Mapped[str | None] = mapped_column(sa.String(255))
    reasons: Mapped[str] = mapped_column(sa.Text)
    run_id: Mapped[int | None] = mapped_column(sa.Integer)
    outcome: Mapped[str] = mapped_column(sa.String(16), server_default=FATE_INVALID)


class SeenRow(Base):
    """The last run that read the whole source of a data type (a snapshot, not a delta).

    Every record of the data type that is not marked vanished was in the source of that run;
    so a run that sees a million unchanged records writes one row here instead of a million.
    """

    __tablename__ = "grip_seen"

    integration: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    data_type: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    run_id: Mapped[int] = mapped_column(sa.Integer)
    seen_at: Mapped[datetime] = mapped_column(default=_now)


class RunRow(Base):
    """One run of a stage: when, what it planned, what came of it, and where its report lies."""

    __tablename__ = "grip_runs"
    __table_args__ = (sa.Index("ix_grip_runs_integration_started", "integration", "started_at"),)

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    integration: Mapped[str] = mapped_column(sa.String(64))
    stage: Mapped[str] = mapped_column(sa.String(16))
    status: Mapped[str] = mapped_column(sa.String(16), default=RunStatus.RUNNING.value)
    label: Mapped[str | None] = mapped_column(sa.String(250))
    started_at: Mapped[datetime] = mapped_column(default=_now)
    ended_at: Mapped[datetime | None]
    heartbeat_at: Mapped[datetime | None]
    fingerprint: Mapped[str | None] = mapped_column(sa.String(128))
    host: Mapped[str | None] = mapped_column(sa.String(255))
    pid: Mapped[int | None] = mapped_column(sa.Integer)
    read: Mapped[int] = mapped_column(sa.Integer, default=0)
    filtered: Mapped[int] = mapped_column(sa.Integer, default=0)
    invalid: Mapped[int] = mapped_column(sa.Integer, default=0)
    planned_new: Mapped[int] = mapped_column(sa.Integer, default=0)
    planned_changed: Mapped[int] = mapped_column(sa.Integer, default=0)
    planned_unchanged: Mapped[int] = mapped_column(sa.Integer, default=0)
    planned_retry: Mapped[int] = mapped_column(sa.Integer, default=0)
    planned_held: Mapped[int] = mapped_column(sa.Integer, default=0)
    vanished: Mapped[int] = mapped_column(sa.Integer, default=0)
    to_push: Mapped[int] = mapped_column(sa.Integer, default=0)
    created: Mapped[int] = mapped_column(sa.Integer, default=0)
    updated: Mapped[int] = mapped_column(sa.Integer, default=0)
    rejected: Mapped[int] = mapped_column(sa.Integer, default=0)
    failed: Mapped[int] = mapped_column(sa.Integer, default=0)
    chunks: Mapped[int] = mapped_column(sa.Integer, default=0)
    work_dir: Mapped[str | None] = mapped_column(sa.Text)
    report_dir: Mapped[str | None] = mapped_column(sa.Text)
    message: Mapped[str | None] = mapped_column(sa.Text)
    details: Mapped[dict[str, Any]] = mapped_column(sa.JSON, default=dict)


class RunChunkRow(Base):
    """One push chunk of a run: its file and what came of its records."""

    __tablename__ = "grip_run_chunks"

    run_id: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    chunk_no: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    path: Mapped[str] = mapped_column(sa.Text)
    rows: Mapped[int] = mapped_column(sa.Integer)
    status: Mapped[str] = mapped_column(sa.String(16), default="pending")
    created: Mapped[int] = mapped_column(sa.Integer, default=0)
    updated: Mapped[int] = mapped_column(sa.Integer, default=0)
    rejected: Mapped[int] = mapped_column(sa.Integer, default=0)
    failed: Mapped[int] = mapped_column(sa.Integer, default=0)
    requests: Mapped[int] = mapped_column(sa.Integer, default=0)
    started_at: Mapped[datetime | None]
    ended_at: Mapped[datetime | None]
    seconds: Mapped[float] = mapped_column(sa.Float, default=0.0)


class RunProblemRow(Base):
    """A record a run set aside (validation, duplicates) or that Grip rejected or failed."""

    __tablename__ = "grip_run_problems"
    __table_args__ = (sa.Index("ix_grip_run_problems_run", "run_id"),)

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[int] = mapped_column(sa.Integer)
    data_type: Mapped[str] = mapped_column(sa.String(64))
    registration_id: Mapped[str | None] = mapped_column(sa.String(255))
    source_row: Mapped[int | None] = mapped_column(sa.BigInteger)
    step: Mapped[str] = mapped_column(sa.String(16))
    outcome: Mapped[str] = mapped_column(sa.String(16))
    status: Mapped[int | None] = mapped_column(sa.Integer)
    reasons: Mapped[str] = mapped_column(sa.Text)


class RunFileRow(Base):
    """A source file a run read; ``committed`` once the run ended and the file counts as done."""

    __tablename__ = "grip_run_files"

    run_id: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    data_type: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(1000), primary_key=True)
    integration: Mapped[str] = mapped_column(sa.String(64), index=True)
    size: Mapped[int | None] = mapped_column(sa.BigInteger)
    mtime: Mapped[float | None] = mapped_column(sa.Float)
    sha256: Mapped[str | None] = mapped_column(sa.String(64))
    committed: Mapped[bool] = mapped_column(default=False)


class WatermarkRow(Base):
    """The cursor watermark an incremental source reached, per integration and data type."""

    __tablename__ = "grip_watermarks"

    integration: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    data_type: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    value: Mapped[str | None] = mapped_column(sa.Text)
    run_id: Mapped[int | None] = mapped_column(sa.Integer)
    updated_at: Mapped[datetime] = mapped_column(default=_now, onupdate=_now)
