"""The ledger: durable state of every integration, record and run, in a SQL database."""

from __future__ import annotations

from grip.ledger.db import (
    LEDGER_URL_ENV,
    create_ledger_engine,
    default_ledger_url,
    safe_url,
    upgrade,
)
from grip.ledger.models import (
    FATE_FILTERED,
    FATE_INVALID,
    RecordOutcome,
    RunStage,
    RunStatus,
    Stage,
)
from grip.ledger.repository import (
    LEAN_STATE_COLUMNS,
    RUN_COUNTERS,
    STATE_COLUMNS,
    ChunkInfo,
    FileEntry,
    IntegrationState,
    Ledger,
    OutcomeEntry,
    Problem,
    RowFate,
    RunInfo,
    decompress_payload,
)

__all__ = [
    "FATE_FILTERED",
    "FATE_INVALID",
    "LEAN_STATE_COLUMNS",
    "LEDGER_URL_ENV",
    "RUN_COUNTERS",
    "STATE_COLUMNS",
    "ChunkInfo",
    "FileEntry",
    "IntegrationState",
    "Ledger",
    "OutcomeEntry",
    "Problem",
    "RecordOutcome",
    "RowFate",
    "RunInfo",
    "RunStage",
    "RunStatus",
    "Stage",
    "create_ledger_engine",
    "decompress_payload",
    "default_ledger_url",
    "safe_url",
    "upgrade",
]
