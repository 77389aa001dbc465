"""The ledger's repository: every read and write the engine makes, each in its own transaction."""

from __future__ import annotations

import json
import logging
import os
import socket
import zlib
from collections.abc import Collection, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, NamedTuple, cast

import sqlalchemy as sa
from sqlalchemy.engine import URL, Connection, Engine

from grip.errors import LedgerError
from grip.ledger.db import create_ledger_engine, safe_url, upgrade
from grip.ledger.models import (
    ACCEPTED,
    FATE_INVALID,
    DecisionRow,
    IntegrationRow,
    RecordOutcome,
    RecordRow,
    RowFateRow,
    RunChunkRow,
    RunFileRow,
    RunProblemRow,
    RunRow,
    RunStatus,
    SeenRow,
    Stage,
    WatermarkRow,
)

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

_integrations = cast(sa.Table, IntegrationRow.__table__)
_decisions = cast(sa.Table, DecisionRow.__table__)
_records = cast(sa.Table, RecordRow.__table__)
_runs = cast(sa.Table, RunRow.__table__)
_chunks = cast(sa.Table, RunChunkRow.__table__)
_problems = cast(sa.Table, RunProblemRow.__table__)
_files = cast(sa.Table, RunFileRow.__table__)
_watermarks = cast(sa.Table, WatermarkRow.__table__)
_fates = cast(sa.Table, RowFateRow.__table__)
_seen = cast(sa.Table, SeenRow.__table__)

STATE_COLUMNS = (
    "data_type",
    "registration_id",
    "accepted_hash",
    "sent_hash",
    "last_outcome",
    "last_seen_run_id",
    "vanished_run_id",
    "source_hash",
    "last_reason",
)
"""The columns of :meth:`Ledger.load_state`, the ledger's side of a plan."""

LEAN_STATE_COLUMNS = (
    "data_type",
    "registration_id",
    "accepted",
    "last_outcome",
    "last_seen_run_id",
    "vanished_run_id",
    "source_hash",
    "last_reason",
)
"""The columns of :meth:`Ledger.load_state` without the content hashes: ``accepted`` says
whether Grip holds an accepted payload of the record."""

_BATCH = 1_000
_PG_BATCH = 5_000
"""Keys per statement: PostgreSQL takes many; SQLite builds may allow only 999 parameters."""


def now() -> datetime:
    """The ledger's clock: an aware UTC timestamp."""
    return datetime.now(UTC)


class RowFate(NamedTuple):
    """A source row set aside for a reason not tied to a record (see :class:`RowFateRow`)."""

    source_hash: int
    registration_id: str | None
    reasons: str
    outcome: str = FATE_INVALID


@dataclass(frozen=True)
class IntegrationState:
    """An integration's stage and its last approval decision, as the ledger holds them."""

    name: str
    stage: Stage
    sample_run_id: int | None = None
    sample_fingerprint: str | None = None
    approved_fingerprint: str | None = None
    decided_by: str | None = None
    decided_at: datetime | None = None
    decision_comment: str | None = None
    live_since: datetime | None = None
    updated_at: datetime | None = None


@dataclass(frozen=True)
class RunInfo:
    """A run as the ledger holds it (see :class:`grip.ledger.models.RunRow` for the columns)."""

    id: int
    integration: str
    stage: str
    status: str
    started_at: datetime
    label: str | None = None
    ended_at: datetime | None = None
    heartbeat_at: datetime | None = None
    fingerprint: str | None = None
    host: str | None = None
    pid: int | None = None
    read: int = 0
    filtered: int = 0
    invalid: int = 0
    planned_new: int = 0
    planned_changed: int = 0
    planned_unchanged: int = 0
    planned_retry: int = 0
    planned_held: int = 0
    vanished: int = 0
    to_push: int = 0
    created: int = 0
    updated: int = 0
    rejected: int = 0
    failed: int = 0
    chunks: int = 0
    work_dir: str | None = None
    report_dir: str | None = None
    message: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def counts(self) -> dict[str, int]:
        """The run's counters by name."""
        return {name: int(getattr(self, name)) for name in RUN_COUNTERS}


RUN_COUNTERS = (
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


@dataclass(frozen=True)
class ChunkInfo:
    """One push chunk of a run and the outcomes recorded for it so far."""

    run_id: int
    chunk_no: int
    path: str
    rows: int
    status: str = "pending"
    created: int = 0
    updated: int = 0
    rejected: int = 0
    failed: int = 0
    requests: int = 0
    started_at: datetime | None = None
    ended_at: datetime | None = None
    seconds: float = 0.0


@dataclass(frozen=True)
class Problem:
    """A record a run set aside or that Grip did not accept; one row of the rejects CSV."""

    data_type: str
    registration_id: str | None
    source_row: int | None
    step: str
    outcome: str
    reasons: str
    status: int | None = None
    source_hash: int | None = field(default=None, compare=False)
    """Hash of the source row (kept on the record, so an unchanged bad row need not be
    validated again); not part of the report."""

    @property
    def about_the_row(self) -> bool:
        """Whether the problem belongs to the record itself, not to its place in the source.

        A repeated registration_id is the later row's problem: the record (its first row) is
        fine, so its ledger state is left alone.
        """
        return bool(self.registration_id) and DUPLICATE_RULE not in self.reasons


DUPLICATE_RULE = "unique_key:"
"""How validation's reason for a repeated registration_id starts."""


@dataclass(frozen=True)
class FileEntry:
    """A source file a run read (SFTP drop or local file)."""

    data_type: str
    name: str
    size: int | None = None
    mtime: float | None = None
    sha256: str | None = None


@dataclass(slots=True)
class OutcomeEntry:
    """The outcome of one push, as the engine hands it to :meth:`Ledger.record_outcomes`.

    Attributes:
        data_type: the record's data type.
        registration_id: the record's key.
        outcome: created, updated, rejected or failed.
        content_hash: hash of the canonical JSON that was sent.
        payload_json: the canonical JSON that was sent; kept (compressed) when Grip accepted it,
            so that a later plan can show which fields changed.
        grip_id: Grip's id of the profile, when known.
        status: HTTP status of the last answer.
        attempts: requests made for this record in this push.
        reason: why it was rejected or failed.
        source_row: the row of the source it came from.
        source_hash: hash of the source row's mapped columns (see ``grip.engine.rowhash``).
        at: when the outcome became known.
    """

    data_type: str
    registration_id: str
    outcome: str
    content_hash: str
    payload_json: str | None = None
    grip_id: int | None = None
    status: int | None = None
    attempts: int = 1
    reason: str | None = None
    source_row: int | None = None
    source_hash: int | None = None
    at: datetime = field(default_factory=now)

    @property
    def accepted(self) -> bool:
        return self.outcome in ACCEPTED


def encode_watermark(value: Any) -> str:
    """Keep a cursor value as JSON text that remembers its type (datetimes stay datetimes)."""
    import datetime as dt
    import decimal

    if isinstance(value, dt.datetime):
        return json.dumps({"type": "datetime", "value": value.isoformat()})
    if isinstance(value, dt.date):
        return json.dumps({"type": "date", "value": value.isoformat()})
    if isinstance(value, decimal.Decimal):
        return json.dumps({"type": "decimal", "value": str(value)})
    if hasattr(value, "item") and not isinstance(value, str | bytes):
        value = value.item()  # numpy scalars
    if isinstance(value, bool | int | float | str):
        return json.dumps({"type": type(value).__name__, "value": value})
    raise LedgerError(
        f"cannot keep a watermark of type {type(value).__name__} ({value!r}); a cursor column "
        "must hold numbers, text, dates or timestamps"
    )


def decode_watermark(text: str | None) -> Any:
    """Turn the text of :func:`encode_watermark` back into the cursor value."""
    import datetime as dt
    import decimal

    if text is None:
        return None
    data = json.loads(text)
    if not isinstance(data, dict) or "type" not in data:
        return data
    kind, value = data["type"], data["value"]
    if kind == "datetime":
        return dt.datetime.fromisoformat(value)
    if kind == "date":
        return dt.date.fromisoformat(value)
    if kind == "decimal":
        return decimal.Decimal(value)
    return value


def _snapshot(cls: type, row: sa.Row[Any] | None) -> Any:
    if row is None:
        return None
    mapping = row._mapping
    names = {f.name for f in fields(cls)}
    return cls(**{k: mapping[k] for k in mapping if k in names})


def _compress(text: str | None) -> bytes | None:
    return None if text is None else zlib.compress(text.encode("utf-8"), 6)


def decompress_payload(blob: bytes | None) -> str | None:
    """Return the canonical JSON text of a stored payload."""
    return None if blob is None else zlib.decompress(blob).decode("utf-8")


class Ledger:
    """The ledger database: the engine's only way to read or write integration and record state.

    Args:
        engine_or_url: a SQLAlchemy engine or URL (SQLite file locally, PostgreSQL in the stack).
        migrate: apply pending migrations on open (idempotent).
    """

    def __init__(self, engine_or_url: Engine | str | URL, *, migrate: bool = True):
        self._owned = not isinstance(engine_or_url, Engine)
        self.engine: Engine = (
            create_ledger_engine(engine_or_url)
            if not isinstance(engine_or_url, Engine)
            else engine_or_url
        )
        if migrate:
            upgrade(self.engine)
        self._upsert = _upsert_builder(self.engine.dialect.name)

    def __repr__(self) -> str:
        return f"Ledger({safe_url(self.engine.url)})"

    def close(self) -> None:
        """Release the connections of an engine this ledger created."""
        if self._owned:
            self.engine.dispose()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _begin(self) -> AbstractContextManager[Connection]:
        return _transaction(self.engine)

    # -- integrations -------------------------------------------------------------------------

    def integration(self, name: str) -> IntegrationState | None:
        """Return the integration's state, or ``None`` if the ledger has never seen it."""
        with self._begin() as conn:
            row = conn.execute(sa.select(_integrations).where(_integrations.c.name == name)).first()
        if row is None:
            return None
        state: IntegrationState = _snapshot(IntegrationState, row)
        return _replace_stage(state)

    def integrations(self) -> list[IntegrationState]:
        """Every integration the ledger knows, by name."""
        with self._begin() as conn:
            rows = conn.execute(sa.select(_integrations).order_by(_integrations.c.name)).all()
        return [_replace_stage(_snapshot(IntegrationState, row)) for row in rows]

    def ensure_integration(self, name: str) -> IntegrationState:
        """Return the integration's state, registering it at stage ``new`` the first time."""
        with self._begin() as conn:
            self._ensure_integration(conn, name)
        state = self.integration(name)
        assert state is not None
        return state

    def _ensure_integration(self, conn: Connection, name: str) -> None:
        stamp = now()
        row = {"name": name, "stage": Stage.NEW.value, "created_at": stamp, "updated_at": stamp}
        conn.execute(self._upsert(_integrations, keys=("name",), update=()), [row])

    def set_stage(self, name: str, stage: Stage, **values: Any) -> None:
        """Move an integration to ``stage``, setting any other integration columns given."""
        with self._begin() as conn:
            self._ensure_integration(conn, name)
            conn.execute(
                _integrations.update()
                .where(_integrations.c.name == name)
                .values(stage=stage.value, updated_at=now(), **values)
            )
        log.info("integration %s is now at stage %s", name, stage.value)

    def record_decision(
        self,
        name: str,
        *,
        approved: bool,
        by: str,
        comment: str | None,
        fingerprint: str | None,
        sample_run_id: int | None,
    ) -> IntegrationState:
        """Record an approval or rejection of the sample and move the integration accordingly.

        Approval records the mappings' fingerprint that later full and sync runs must match.
        """
        stamp = now()
        stage = Stage.APPROVED if approved else Stage.SAMPLE_REJECTED
        values: dict[str, Any] = {
            "stage": stage.value,
            "decided_by": by,
            "decided_at": stamp,
            "decision_comment": comment,
            "updated_at": stamp,
        }
        if approved:
            values["approved_fingerprint"] = fingerprint
        with self._begin() as conn:
            self._ensure_integration(conn, name)
            conn.execute(_integrations.update().where(_integrations.c.name == name).values(values))
            conn.execute(
                _decisions.insert().values(
                    integration=name,
                    approved=approved,
                    fingerprint=fingerprint,
                    sample_run_id=sample_run_id,
                    decided_by=by,
                    decided_at=stamp,
                    comment=comment,
                )
            )
        log.info(
            "integration %s: sample %s by %s", name, "approved" if approved else "rejected", by
        )
        state = self.integration(name)
        assert state is not None
        return state

    def decisions(self, name: str) -> list[dict[str, Any]]:
        """Every decision recorded for an integration, oldest first."""
        with self._begin() as conn:
            rows = conn.execute(
                sa.select(_decisions)
                .where(_decisions.c.integration == name)
                .order_by(_decisions.c.id)
            ).all()
        return [dict(row._mapping) for row in rows]

    # -- runs ---------------------------------------------------------------------------------

    def start_run(
        self,
        integration: str,
        stage: str,
        *,
        fingerprint: str | None = None,
        label: str | None = None,
        work_dir: str | None = None,
        report_dir: str | None = None,
        pid: int | None = None,
    ) -> int:
        """Register a new run as ``running`` and return its id.

        ``pid`` is given by a run that lives in one process (the CLI): if that process is gone,
        a later run knows at once that this one was killed.
        """
        stamp = now()
        with self._begin() as conn:
            self._ensure_integration(conn, integration)
            result = conn.execute(
                _runs.insert()
                .values(
                    integration=integration,
                    stage=stage,
                    status=RunStatus.RUNNING.value,
                    label=label,
                    started_at=stamp,
                    heartbeat_at=stamp,
                    fingerprint=fingerprint,
                    host=socket.gethostname(),
                    pid=pid,
                    work_dir=work_dir,
                    report_dir=report_dir,
                    details={},
                    **dict.fromkeys(RUN_COUNTERS, 0),
                )
                .returning(_runs.c.id)
            )
            return int(result.scalar_one())

    def update_run(self, run_id: int, **values: Any) -> None:
        """Set columns of a run (counters, status, folders, details, message)."""
        values.setdefault("heartbeat_at", now())
        with self._begin() as conn:
            conn.execute(_runs.update().where(_runs.c.id == run_id).values(**values))

    def run(self, run_id: int) -> RunInfo:
        """Return a run; raise LedgerError naming the id if there is none."""
        with self._begin() as conn:
            row = conn.execute(sa.select(_runs).where(_runs.c.id == run_id)).first()
        if row is None:
            raise LedgerError(f"run {run_id} is not in the ledger at {safe_url(self.engine.url)}")
        info: RunInfo = _snapshot(RunInfo, row)
        return info

    def runs(self, integration: str | None = None, *, limit: int = 10) -> list[RunInfo]:
        """The most recent runs, newest first, of one integration or of all."""
        stmt = sa.select(_runs).order_by(_runs.c.id.desc()).limit(limit)
        if integration is not None:
            stmt = stmt.where(_runs.c.integration == integration)
        with self._begin() as conn:
            rows = conn.execute(stmt).all()
        return [_snapshot(RunInfo, row) for row in rows]

    def abandon_stale_runs(self, integration: str, *, stale_after: timedelta) -> list[int]:
        """Mark as ``abandoned`` the integration's runs that are ``running`` but dead.

        A run is dead when its process is gone from this host, or when it has not written to the
        ledger for ``stale_after`` (a worker on another host died). Returns the ids marked.
        """
        host = socket.gethostname()
        limit = now() - stale_after
        dead = []
        with self._begin() as conn:
            rows = conn.execute(
                sa.select(_runs.c.id, _runs.c.host, _runs.c.pid, _runs.c.heartbeat_at).where(
                    _runs.c.integration == integration,
                    _runs.c.status == RunStatus.RUNNING.value,
                )
            ).all()
            for run_id, run_host, pid, beat in rows:
                gone = run_host == host and pid is not None and not _process_alive(pid)
                if gone or (beat is not None and _aware(beat) < limit):
                    dead.append(run_id)
            if dead:
                conn.execute(
                    _runs.update()
                    .where(_runs.c.id.in_(dead))
                    .values(
                        status=RunStatus.ABANDONED.value,
                        message="the run stopped without finishing (process killed or lost); "
                        "a later run pushed what it left",
                    )
                )
        if dead:
            log.warning("integration %s: marked runs %s as abandoned", integration, dead)
        return dead

    # -- chunks -------------------------------------------------------------------------------

    def add_chunks(self, run_id: int, chunks: Sequence[tuple[int, str, int]]) -> None:
        """Register a run's push chunks as ``(chunk_no, path, rows)``."""
        rows = [
            {
                "run_id": run_id,
                "chunk_no": no,
                "path": path,
                "rows": count,
                "status": "pending",
                "created": 0,
                "updated": 0,
                "rejected": 0,
                "failed": 0,
                "requests": 0,
                "seconds": 0.0,
            }
            for no, path, count in chunks
        ]
        if not rows:
            return
        with self._begin() as conn:
            conn.execute(_chunks.insert(), rows)
            conn.execute(_runs.update().where(_runs.c.id == run_id).values(chunks=len(rows)))

    def chunks(self, run_id: int) -> list[ChunkInfo]:
        """A run's push chunks in order."""
        with self._begin() as conn:
            rows = conn.execute(
                sa.select(_chunks).where(_chunks.c.run_id == run_id).order_by(_chunks.c.chunk_no)
            ).all()
        return [_snapshot(ChunkInfo, row) for row in rows]

    def chunk(self, run_id: int, chunk_no: int) -> ChunkInfo:
        """One push chunk; raise LedgerError if the run has no such chunk."""
        with self._begin() as conn:
            row = conn.execute(
                sa.select(_chunks).where(_chunks.c.run_id == run_id, _chunks.c.chunk_no == chunk_no)
            ).first()
        if row is None:
            raise LedgerError(f"run {run_id} has no push chunk {chunk_no}")
        info: ChunkInfo = _snapshot(ChunkInfo, row)
        return info

    def update_chunk(self, run_id: int, chunk_no: int, **values: Any) -> None:
        """Set columns of a push chunk (status, times, request count)."""
        with self._begin() as conn:
            conn.execute(
                _chunks.update()
                .where(_chunks.c.run_id == run_id, _chunks.c.chunk_no == chunk_no)
                .values(**values)
            )

    # -- records ------------------------------------------------------------------------------

    def load_state(
        self,
        integration: str,
        data_types: Iterable[str] | None = None,
        *,
        hashes: bool = True,
    ) -> pd.DataFrame:
        """Return the ledger's side of a plan: one row per record, :data:`STATE_COLUMNS`.

        Read once per run; the plan compares it with the source in column form.

        Args:
            integration: the integration.
            data_types: its data types to load; every one if None.
            hashes: load the accepted and sent content hashes of every record. Without them
                the frame has :data:`LEAN_STATE_COLUMNS`, about half the text to read: a sync
                compares most rows by their source hash alone, and asks
                :meth:`content_state` about the few records whose rows changed.
        """
        import pandas as pd

        columns = STATE_COLUMNS if hashes else LEAN_STATE_COLUMNS
        r = _records.c
        wanted = None if data_types is None else list(dict.fromkeys(data_types))
        # NOTE: a single data type is not read 1,000,000 times over: it is filled in after
        constant = wanted[0] if wanted is not None and len(wanted) == 1 else None
        selected = [
            r.accepted_hash.is_not(None).label("accepted") if name == "accepted" else r[name]
            for name in columns
            if not (name == "data_type" and constant is not None)
        ]
        stmt = sa.select(*selected).where(r.integration == integration)
        if wanted is not None:
            stmt = stmt.where(r.data_type.in_(wanted))
        with self._begin() as conn:
            if conn.dialect.name == "postgresql":
                frame = _pg_copy_frame(conn, _compact_state(stmt) if hashes else stmt)
            else:
                rows = conn.execute(stmt).all()
                names = [column.name for column in selected]
                # NOTE: column by column, so that 64-bit hashes never pass through float64
                values = list(zip(*rows, strict=True)) if rows else [()] * len(names)
                frame = pd.DataFrame(
                    {
                        name: pd.array(list(column), dtype=_state_dtype(name))
                        for name, column in zip(names, values, strict=True)
                    }
                )
        if constant is not None:
            filled = pd.Series(constant, index=frame.index, dtype=_state_dtype("data_type"))
            frame.insert(0, "data_type", filled)
        return _typed_state(frame, columns)

    def content_state(
        self, integration: str, data_type: str, registration_ids: Sequence[str]
    ) -> dict[str, tuple[str | None, str | None, str | None]]:
        """The accepted hash, sent hash and last outcome of records, by registration id.

        What :meth:`load_state` leaves out without ``hashes``, for the records a plan asks
        about; ids the ledger does not know are left out.
        """
        r = _records.c
        out: dict[str, tuple[str | None, str | None, str | None]] = {}
        ids = list(dict.fromkeys(registration_ids))
        with self._begin() as conn:
            size = _batch_size(conn)
            for start in range(0, len(ids), size):
                stmt = sa.select(
                    r.registration_id, r.accepted_hash, r.sent_hash, r.last_outcome
                ).where(
                    r.integration == integration,
                    r.data_type == data_type,
                    r.registration_id.in_(ids[start : start + size]),
                )
                for registration_id, accepted, sent, outcome in conn.execute(stmt):
                    out[registration_id] = (accepted, sent, outcome)
        return out

    def record_outcomes(
        self, run_id: int, entries: Sequence[OutcomeEntry], *, integration: str, chunk_no: int
    ) -> None:
        """Write a batch of push outcomes in one transaction, as they arrive from the client.

        Accepted outcomes replace the record's accepted hash and payload; rejected and failed
        ones keep them (Grip still holds what it accepted before). The chunk's counters and the
        run's heartbeat move in the same transaction, and rejected or failed records become
        problems of the run.
        """
        if not entries:
            return
        # NOTE: one statement may not touch a key twice; the last outcome of a key wins.
        entries = list({(e.data_type, e.registration_id): e for e in entries}.values())
        accepted = [self._outcome_row(integration, run_id, e) for e in entries if e.accepted]
        refused = [self._outcome_row(integration, run_id, e) for e in entries if not e.accepted]
        counts = {o: 0 for o in ("created", "updated", "rejected", "failed")}
        requests = 0
        for entry in entries:
            counts[entry.outcome] += 1
            requests += entry.attempts
        problems = [
            {
                "run_id": run_id,
                "data_type": e.data_type,
                "registration_id": e.registration_id,
                "source_row": e.source_row,
                "step": "api",
                "outcome": e.outcome,
                "status": e.status,
                "reasons": e.reason or e.outcome,
            }
            for e in entries
            if not e.accepted
        ]
        with self._begin() as conn:
            if accepted:
                conn.execute(
                    self._upsert(_records, keys=_RECORD_KEY, update=_ACCEPTED_UPDATE), accepted
                )
            if refused:
                for row in refused:
                    row.pop("accepted_hash")
                    row.pop("accepted_payload")
                conn.execute(
                    self._upsert(_records, keys=_RECORD_KEY, update=_REFUSED_UPDATE), refused
                )
            if problems:
                conn.execute(_problems.insert(), problems)
            c = _chunks.c
            conn.execute(
                _chunks.update()
                .where(c.run_id == run_id, c.chunk_no == chunk_no)
                .values(
                    created=c.created + counts["created"],
                    updated=c.updated + counts["updated"],
                    rejected=c.rejected + counts["rejected"],
                    failed=c.failed + counts["failed"],
                    requests=c.requests + requests,
                )
            )
            conn.execute(_runs.update().where(_runs.c.id == run_id).values(heartbeat_at=now()))

    @staticmethod
    def _outcome_row(integration: str, run_id: int, e: OutcomeEntry) -> dict[str, Any]:
        return {
            "integration": integration,
            "data_type": e.data_type,
            "registration_id": e.registration_id,
            "accepted_hash": e.content_hash,
            "accepted_payload": _compress(e.payload_json),
            "sent_hash": e.content_hash,
            "grip_id": e.grip_id,
            "last_outcome": e.outcome,
            "last_reason": e.reason,
            "last_status": e.status,
            "attempts": e.attempts,
            "first_pushed_at": e.at,
            "last_pushed_at": e.at,
            "last_run_id": run_id,
            "last_seen_run_id": run_id,
            "vanished_run_id": None,
            "source_row": e.source_row,
            "source_hash": e.source_hash,
        }

    def record_problems(
        self,
        run_id: int,
        problems: Sequence[Problem],
        *,
        integration: str,
        update_records: bool = True,
    ) -> None:
        """Store a run's validation rejects; records with a key get ``invalid`` as last outcome.

        What Grip accepted before stays as it is: an invalid row is not pushed, so Grip keeps
        the last version it accepted. A repeated registration_id is the run's problem only (see
        :attr:`Problem.about_the_row`). With ``update_records`` False only the run's problems
        are written (the records already say the same).
        """
        if not problems:
            return
        rows = [
            {
                "run_id": run_id,
                "data_type": p.data_type,
                "registration_id": p.registration_id,
                "source_row": p.source_row,
                "step": p.step,
                "outcome": p.outcome,
                "status": p.status,
                "reasons": p.reasons,
            }
            for p in problems
        ]
        latest: dict[tuple[str, str], dict[str, Any]] = {}
        for p in problems:
            if update_records and p.about_the_row:
                assert p.registration_id is not None
                latest[(p.data_type, p.registration_id)] = {
                    "integration": integration,
                    "data_type": p.data_type,
                    "registration_id": p.registration_id,
                    "last_outcome": RecordOutcome.INVALID.value,
                    "last_reason": p.reasons,
                    "attempts": 0,
                    "last_run_id": run_id,
                    "last_seen_run_id": run_id,
                    "vanished_run_id": None,
                    "source_row": p.source_row,
                    "source_hash": p.source_hash,
                }
        with self._begin() as conn:
            _insert_many(conn, _problems, rows)
            if latest:
                conn.execute(
                    self._upsert(_records, keys=_RECORD_KEY, update=_INVALID_UPDATE),
                    list(latest.values()),
                )

    def problems(self, run_id: int) -> Iterator[Problem]:
        """A run's problems in the order they were recorded, streamed."""
        stmt = (
            sa.select(
                _problems.c.data_type,
                _problems.c.registration_id,
                _problems.c.source_row,
                _problems.c.step,
                _problems.c.outcome,
                _problems.c.reasons,
                _problems.c.status,
            )
            .where(_problems.c.run_id == run_id)
            .order_by(_problems.c.id)
        )
        with self.engine.connect() as conn:
            result = conn.execution_options(stream_results=True, yield_per=5_000).execute(stmt)
            for row in result:
                yield Problem(*row)

    def problem_reasons(self, run_id: int) -> dict[tuple[str, str], int]:
        """Count a run's problems by ``(step, reason)``."""
        stmt = (
            sa.select(_problems.c.step, _problems.c.reasons, sa.func.count())
            .where(_problems.c.run_id == run_id)
            .group_by(_problems.c.step, _problems.c.reasons)
        )
        with self._begin() as conn:
            return {(step, reasons): int(n) for step, reasons, n in conn.execute(stmt)}

    def accepted_hashes(
        self, integration: str, keys: Iterable[tuple[str, str]]
    ) -> dict[tuple[str, str], str]:
        """Return the accepted hash of each ``(data_type, registration_id)`` that has one."""
        r = _records.c
        return self._by_keys(integration, keys, r.accepted_hash, r.accepted_hash.is_not(None))

    def outcomes_in_run(
        self, integration: str, run_id: int, keys: Iterable[tuple[str, str]]
    ) -> dict[tuple[str, str], str]:
        """The last outcome of each key among ``keys`` whose last push belongs to ``run_id``."""
        r = _records.c
        return self._by_keys(
            integration,
            keys,
            r.last_outcome,
            r.last_run_id == run_id,
            r.last_pushed_at.is_not(None),
            r.last_outcome.in_(["created", "updated", "rejected", "failed"]),
        )

    def _by_keys(
        self,
        integration: str,
        keys: Iterable[tuple[str, str]],
        column: sa.ColumnElement[Any],
        *conditions: sa.ColumnElement[bool],
    ) -> dict[tuple[str, str], Any]:
        """One column of the records among ``keys`` that meet ``conditions``, in batches."""
        by_type: dict[str, list[str]] = {}
        for data_type, registration_id in keys:
            by_type.setdefault(data_type, []).append(registration_id)
        out: dict[tuple[str, str], Any] = {}
        r = _records.c
        with self._begin() as conn:
            for data_type, ids in by_type.items():
                for start in range(0, len(ids), _BATCH):
                    stmt = sa.select(r.registration_id, column).where(
                        r.integration == integration,
                        r.data_type == data_type,
                        r.registration_id.in_(ids[start : start + _BATCH]),
                        *conditions,
                    )
                    for registration_id, value in conn.execute(stmt):
                        out[(data_type, registration_id)] = value
        return out

    def accepted_payloads(
        self, integration: str, keys: Iterable[tuple[str, str]]
    ) -> dict[tuple[str, str], str]:
        """Return the canonical JSON Grip last accepted for each key that has one."""
        out: dict[tuple[str, str], str] = {}
        r = _records.c
        with self._begin() as conn:
            for data_type, registration_id in keys:
                blob = conn.execute(
                    sa.select(r.accepted_payload).where(
                        r.integration == integration,
                        r.data_type == data_type,
                        r.registration_id == registration_id,
                    )
                ).scalar()
                text = decompress_payload(blob)
                if text is not None:
                    out[(data_type, registration_id)] = text
        return out

    def record(self, integration: str, data_type: str, registration_id: str) -> dict[str, Any]:
        """One record's ledger row (without the stored payload); empty if never seen."""
        with self._begin() as conn:
            row = conn.execute(
                sa.select(_records).where(
                    _records.c.integration == integration,
                    _records.c.data_type == data_type,
                    _records.c.registration_id == registration_id,
                )
            ).first()
        if row is None:
            return {}
        out = dict(row._mapping)
        out.pop("accepted_payload", None)
        if out["vanished_run_id"] is None:
            out["last_seen_run_id"] = _latest(
                out["last_seen_run_id"], self.seen_run(integration, data_type)
            )
        return out

    def refresh_unchanged(
        self, integration: str, data_type: str, rows: Sequence[tuple[str, int | None]]
    ) -> None:
        """Note that records are in the source unchanged: ``(registration_id, source_hash)``.

        Their source hash becomes the current one (so that the next sync skips them without
        mapping), and a record last set aside as ``invalid`` is ``unchanged`` again: Grip holds
        exactly its content.
        """
        if not rows:
            return
        r = _records.c
        was_invalid = r.last_outcome == RecordOutcome.INVALID.value
        stmt = (
            _records.update()
            .where(
                r.integration == integration,
                r.data_type == data_type,
                r.registration_id == sa.bindparam("b_id"),
            )
            .values(
                source_hash=sa.bindparam("b_hash"),
                last_outcome=sa.case(
                    (was_invalid, RecordOutcome.UNCHANGED.value), else_=r.last_outcome
                ),
                last_reason=sa.case((was_invalid, None), else_=r.last_reason),
            )
        )
        params = [{"b_id": rid, "b_hash": digest} for rid, digest in rows]
        with self._begin() as conn:
            conn.execute(stmt, params)

    def load_fates(self, integration: str, data_types: Iterable[str]) -> pd.DataFrame:
        """The source rows set aside for reasons not tied to a record (see RowFateRow).

        Columns ``data_type``, ``source_hash``, ``registration_id``, ``reasons``, ``outcome``.
        """
        import pandas as pd

        f = _fates.c
        stmt = sa.select(f.data_type, f.source_hash, f.registration_id, f.reasons, f.outcome).where(
            f.integration == integration, f.data_type.in_(list(data_types))
        )
        with self._begin() as conn:
            if conn.dialect.name == "postgresql":
                return _pg_copy_frame(conn, stmt)
            rows = conn.execute(stmt).all()
        values = list(zip(*rows, strict=True)) if rows else [()] * 5
        text = _state_dtype("reasons")
        return pd.DataFrame(
            {
                "data_type": pd.array(list(values[0]), dtype=text),
                "source_hash": pd.array(list(values[1]), dtype="Int64"),
                "registration_id": pd.array(list(values[2]), dtype=text),
                "reasons": pd.array(list(values[3]), dtype=text),
                "outcome": pd.array(list(values[4]), dtype=text),
            }
        )

    def save_fates(
        self,
        run_id: int,
        integration: str,
        data_type: str,
        fates: Sequence[RowFate | tuple[int, str | None, str]],
        *,
        replace: bool,
        kept: Collection[int] = (),
    ) -> None:
        """Keep a run's set-aside rows: ``(source_hash, registration_id, reasons[, outcome])``.

        A fate written before is replaced; its run is the one that wrote it last.

        Args:
            run_id: the run.
            integration: the integration.
            data_type: the data type the rows are of.
            fates: the rows to write (the outcome is ``invalid`` where a tuple has none).
            replace: the run read the whole source: the data type's fates become ``fates``
                and ``kept``, every other one is deleted.
            kept: source hashes of fates the run found again as they were; not written again.
        """
        f = _fates.c
        rows = {}
        for fate in fates:
            fate = RowFate(*fate)
            rows[fate.source_hash] = {
                "integration": integration,
                "data_type": data_type,
                "source_hash": fate.source_hash,
                "registration_id": fate.registration_id,
                "reasons": fate.reasons,
                "outcome": fate.outcome,
                "run_id": run_id,
            }
        mine = sa.and_(f.integration == integration, f.data_type == data_type)
        with self._begin() as conn:
            if replace:
                keep = set(rows) | {int(h) for h in kept}
                stored = conn.execute(sa.select(f.source_hash).where(mine)).scalars().all()
                stale = [h for h in stored if h not in keep]
                size = _batch_size(conn)
                for start in range(0, len(stale), size):
                    batch = stale[start : start + size]
                    conn.execute(_fates.delete().where(mine, f.source_hash.in_(batch)))
            if rows:
                conn.execute(
                    self._upsert(
                        _fates,
                        keys=("integration", "data_type", "source_hash"),
                        update=("registration_id", "reasons", "outcome", "run_id"),
                    ),
                    list(rows.values()),
                )

    def seen_run(self, integration: str, data_type: str) -> int | None:
        """The last run that read the whole source of the data type, if any."""
        with self._begin() as conn:
            return conn.execute(
                sa.select(_seen.c.run_id).where(
                    _seen.c.integration == integration, _seen.c.data_type == data_type
                )
            ).scalar()

    def mark_seen(
        self,
        run_id: int,
        integration: str,
        data_type: str,
        unseen: pd.DataFrame,
        returned: Sequence[str] = (),
    ) -> None:
        """Record a whole read of a data type: what vanished, what came back, when it was read.

        Args:
            run_id: the run that read the whole source.
            integration: the integration.
            data_type: the data type read.
            unseen: the ledger's records of the data type the run did not see (columns of
                :meth:`load_state`): they get the first run that missed them and keep their
                last sighting. Vanished records are never deleted.
            returned: registration ids of vanished records that are in the source again.

        The records the run saw are not written one by one: the data type's row in
        ``grip_seen`` says they were there (see :meth:`record`).
        """
        r = _records.c
        previous = self.seen_run(integration, data_type)
        gone = [
            {
                "b_id": str(row.registration_id),
                "b_seen": _latest(row.last_seen_run_id, previous),
                "b_gone": run_id,
            }
            for row in unseen.itertuples(index=False)
            if _missing(row.vanished_run_id)
        ]
        back = [{"b_id": str(rid), "b_seen": run_id, "b_gone": None} for rid in returned]
        stmt = (
            _records.update()
            .where(
                r.integration == integration,
                r.data_type == data_type,
                r.registration_id == sa.bindparam("b_id"),
            )
            .values(last_seen_run_id=sa.bindparam("b_seen"), vanished_run_id=sa.bindparam("b_gone"))
        )
        with self._begin() as conn:
            if gone or back:
                conn.execute(stmt, gone + back)
            conn.execute(
                self._upsert(
                    _seen, keys=("integration", "data_type"), update=("run_id", "seen_at")
                ),
                [
                    {
                        "integration": integration,
                        "data_type": data_type,
                        "run_id": run_id,
                        "seen_at": now(),
                    }
                ],
            )

    def record_counts(self, integration: str) -> dict[str, dict[str, int]]:
        """Count an integration's records by data type and last outcome (``vanished`` apart)."""
        r = _records.c
        stmt = (
            sa.select(r.data_type, r.last_outcome, r.vanished_run_id.is_not(None), sa.func.count())
            .where(r.integration == integration)
            .group_by(r.data_type, r.last_outcome, r.vanished_run_id.is_not(None))
        )
        out: dict[str, dict[str, int]] = {}
        with self._begin() as conn:
            for data_type, outcome, gone, n in conn.execute(stmt):
                counts = out.setdefault(data_type, {})
                key = "vanished" if gone else (outcome or "unknown")
                counts[key] = counts.get(key, 0) + int(n)
        return out

    # -- files and watermarks -----------------------------------------------------------------

    def add_files(self, run_id: int, integration: str, files: Sequence[FileEntry]) -> None:
        """Note the source files a run read; they count as processed once the run commits."""
        rows = [
            {
                "run_id": run_id,
                "integration": integration,
                "data_type": f.data_type,
                "name": f.name,
                "size": f.size,
                "mtime": f.mtime,
                "sha256": f.sha256,
                "committed": False,
            }
            for f in files
        ]
        if rows:
            with self._begin() as conn:
                conn.execute(_files.insert(), rows)

    def run_files(self, run_id: int) -> list[FileEntry]:
        """The source files a run read."""
        f = _files.c
        with self._begin() as conn:
            rows = conn.execute(
                sa.select(f.data_type, f.name, f.size, f.mtime, f.sha256)
                .where(f.run_id == run_id)
                .order_by(f.data_type, f.name)
            ).all()
        return [FileEntry(*row) for row in rows]

    def processed_files(self, integration: str, data_type: str) -> list[FileEntry]:
        """The files of committed runs: what an ``unprocessed`` source must not read again."""
        f = _files.c
        with self._begin() as conn:
            rows = conn.execute(
                sa.select(f.data_type, f.name, f.size, f.mtime, f.sha256)
                .where(f.integration == integration, f.data_type == data_type, f.committed)
                .order_by(f.name)
            ).all()
        return [FileEntry(*row) for row in rows]

    def watermark(self, integration: str, data_type: str) -> Any:
        """The cursor watermark an incremental source reached, or ``None`` before any."""
        w = _watermarks.c
        with self._begin() as conn:
            text = conn.execute(
                sa.select(w.value).where(w.integration == integration, w.data_type == data_type)
            ).scalar()
        return decode_watermark(text)

    def watermarks(self, integration: str) -> dict[str, Any]:
        """Every data type's watermark of an integration."""
        w = _watermarks.c
        with self._begin() as conn:
            rows = conn.execute(
                sa.select(w.data_type, w.value).where(w.integration == integration)
            ).all()
        return {dt: decode_watermark(text) for dt, text in rows}

    def commit_run(self, run_id: int, integration: str, watermarks: dict[str, Any]) -> None:
        """Make a finished run's files count as processed and its watermarks the current ones."""
        stamp = now()
        rows = [
            {
                "integration": integration,
                "data_type": data_type,
                "value": encode_watermark(value),
                "run_id": run_id,
                "updated_at": stamp,
            }
            for data_type, value in watermarks.items()
            if value is not None
        ]
        with self._begin() as conn:
            conn.execute(_files.update().where(_files.c.run_id == run_id).values(committed=True))
            if rows:
                conn.execute(
                    self._upsert(
                        _watermarks,
                        keys=("integration", "data_type"),
                        update=("value", "run_id", "updated_at"),
                    ),
                    rows,
                )

    # -- whole-table views --------------------------------------------------------------------

    def table_snapshot(self) -> dict[str, list[tuple[Any, ...]]]:
        """Every row of every ledger table, sorted: for tests that a dry run changed nothing."""
        out = {}
        with self._begin() as conn:
            for table in (
                _integrations,
                _decisions,
                _records,
                _runs,
                _chunks,
                _problems,
                _files,
                _watermarks,
                _fates,
                _seen,
            ):
                rows = conn.execute(sa.select(table)).all()
                out[table.name] = sorted((tuple(row) for row in rows), key=repr)
        return out


_ACCEPTED_UPDATE = (
    "source_hash",
    "accepted_hash",
    "accepted_payload",
    "sent_hash",
    "grip_id",
    "last_outcome",
    "last_reason",
    "last_status",
    "attempts",
    "first_pushed_at",
    "last_pushed_at",
    "last_run_id",
    "last_seen_run_id",
    "vanished_run_id",
    "source_row",
)
_RECORD_KEY = ("integration", "data_type", "registration_id")
_INVALID_UPDATE = (
    "source_hash",
    "last_outcome",
    "last_reason",
    "last_run_id",
    "last_seen_run_id",
    "vanished_run_id",
    "source_row",
)
_REFUSED_UPDATE = tuple(
    name for name in _ACCEPTED_UPDATE if name not in ("accepted_hash", "accepted_payload")
)


@contextmanager
def _transaction(engine: Engine) -> Iterator[Connection]:
    """``engine.begin()`` that turns database errors into a LedgerError naming the ledger."""
    try:
        with engine.begin() as conn:
            yield conn
    except sa.exc.SQLAlchemyError as err:
        raise LedgerError(f"ledger query failed at {safe_url(engine.url)}: {err}") from err


def _upsert_builder(dialect: str) -> Any:
    """Return ``build(table, keys, update)`` making an insert-or-update for ``dialect``.

    The statement carries no values: it is executed with a list of rows, which SQLAlchemy
    sends in batches of multi-row VALUES (one compiled statement, cached).
    """
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        insert_fn: Any = pg_insert
    elif dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        insert_fn = sqlite_insert
    else:
        raise LedgerError(
            f"the ledger runs on PostgreSQL or SQLite; a {dialect} database is not supported"
        )

    def build(table: sa.Table, *, keys: Sequence[str], update: Sequence[str]) -> Any:
        stmt = insert_fn(table)
        if not update:
            return stmt.on_conflict_do_nothing(index_elements=list(keys))
        excluded = stmt.excluded
        values: dict[str, Any] = {}
        for name in update:
            column = table.c[name]
            if name == "attempts":
                values[name] = column + excluded[name]
            elif name == "first_pushed_at":
                values[name] = sa.func.coalesce(column, excluded[name])
            elif name == "grip_id":
                values[name] = sa.func.coalesce(excluded[name], column)
            else:
                values[name] = excluded[name]
        return stmt.on_conflict_do_update(index_elements=list(keys), set_=values)

    return build


_PROBLEM_COLUMNS = (
    "run_id",
    "data_type",
    "registration_id",
    "source_row",
    "step",
    "outcome",
    "status",
    "reasons",
)


def _insert_many(conn: Connection, table: sa.Table, rows: list[dict[str, Any]]) -> None:
    """Insert rows; on PostgreSQL thousands of them go through COPY, ten times faster."""
    if conn.dialect.name != "postgresql" or len(rows) < 100 or table is not _problems:
        conn.execute(table.insert(), rows)
        return
    import csv
    import io

    buffer = io.StringIO()
    writer = csv.writer(buffer)
    for row in rows:
        writer.writerow(["" if row[c] is None else row[c] for c in _PROBLEM_COLUMNS])
    buffer.seek(0)
    columns = ", ".join(_PROBLEM_COLUMNS)
    raw = conn.connection.dbapi_connection
    assert raw is not None
    cursor: Any = raw.cursor()
    try:
        # NOTE: an unquoted empty field is NULL in CSV COPY; the csv module quotes only what
        # needs it, and an empty text (never written here) would need FORCE_NOT_NULL
        cursor.copy_expert(f"COPY {table.name} ({columns}) FROM STDIN WITH (FORMAT csv)", buffer)
    finally:
        cursor.close()


_SAME_AS_ACCEPTED = "="
"""What :func:`_compact_state` writes for a sent hash equal to the accepted one."""


def _compact_state(stmt: sa.Select[Any]) -> sa.Select[Any]:
    """The state select with most sent hashes left out: they equal the accepted hash.

    A third less text for COPY to write and parse; :func:`_pg_copy_frame` puts them back.
    """
    sent = _records.c.sent_hash
    marked = sa.case(
        (sent == _records.c.accepted_hash, sa.literal(_SAME_AS_ACCEPTED)), else_=sent
    ).label("sent_hash")
    return stmt.with_only_columns(
        *(marked if column.name == "sent_hash" else column for column in stmt.selected_columns),
        maintain_column_froms=True,
    )


def _pg_copy_frame(conn: Connection, stmt: sa.Select[Any]) -> pd.DataFrame:
    """Read a select through PostgreSQL's COPY into a frame: several times faster than rows.

    COPY's text goes through a pipe into Arrow's CSV reader as it comes, never whole in memory.
    """
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pacsv

    from grip.pgcopy import CopyReader, sends_valid_utf8

    sql = str(stmt.compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True}))
    raw = conn.connection.driver_connection
    types = {
        "data_type": pa.string(),
        "registration_id": pa.string(),
        "accepted_hash": pa.string(),
        "sent_hash": pa.string(),
        "accepted": pa.bool_(),
        "last_outcome": pa.string(),
        "last_seen_run_id": pa.int64(),
        "vanished_run_id": pa.int64(),
        "source_hash": pa.int64(),
        "last_reason": pa.string(),
        "reasons": pa.string(),
        "outcome": pa.string(),
    }
    options = pacsv.ConvertOptions(
        column_types=types,
        strings_can_be_null=True,
        quoted_strings_can_be_null=False,
        true_values=["t"],
        false_values=["f"],
        check_utf8=not sends_valid_utf8(raw),
    )
    copy_sql = f"COPY ({sql}) TO STDOUT WITH (FORMAT csv, HEADER true)"
    with CopyReader(raw, copy_sql) as copy:
        try:
            table = pacsv.read_csv(copy.file, convert_options=options)
        except pa.ArrowInvalid:
            copy.raise_failure()  # a COPY that failed half way is the cause to report
            raise
        copy.check()
    if "sent_hash" in table.column_names and "accepted_hash" in table.column_names:
        sent = table["sent_hash"]
        same = pc.fill_null(pc.equal(sent, _SAME_AS_ACCEPTED), False)
        table = table.set_column(
            table.column_names.index("sent_hash"),
            "sent_hash",
            pc.if_else(same, table["accepted_hash"], sent),
        )
    return table.to_pandas(types_mapper=_arrow_types)


def _arrow_types(arrow_type: Any) -> Any:
    import pandas as pd
    import pyarrow as pa

    if arrow_type == pa.string():
        return pd.ArrowDtype(pa.string())
    if arrow_type == pa.int64():
        return pd.Int64Dtype()
    return None


def _typed_state(frame: pd.DataFrame, columns: Sequence[str] = STATE_COLUMNS) -> pd.DataFrame:
    import pandas as pd

    out = pd.DataFrame(index=pd.RangeIndex(len(frame)))
    for name in columns:
        column = frame[name] if name in frame else pd.Series([None] * len(frame))
        out[name] = column.reset_index(drop=True).astype(_state_dtype(name))
    return out


def _state_dtype(name: str) -> Any:
    import pandas as pd
    import pyarrow as pa

    if name.endswith("_run_id") or name == "source_hash":
        return pd.Int64Dtype()
    if name == "accepted":
        return bool
    return pd.ArrowDtype(pa.string())


def _batch_size(conn: Connection) -> int:
    return _PG_BATCH if conn.dialect.name == "postgresql" else _BATCH


def _latest(*run_ids: Any) -> int | None:
    known = [int(v) for v in run_ids if not _missing(v)]
    return max(known) if known else None


def _missing(value: Any) -> bool:
    import pandas as pd

    return value is None or bool(pd.isna(value))


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _aware(stamp: datetime) -> datetime:
    return stamp if stamp.tzinfo is not None else stamp.replace(tzinfo=UTC)


def _replace_stage(state: IntegrationState) -> IntegrationState:
    from dataclasses import replace

    return replace(state, stage=Stage(state.stage))
