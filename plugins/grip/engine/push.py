"""Pushing one chunk of a run, with outcomes reaching the ledger as they arrive."""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pandas as pd

from grip.engine.progress import NoProgress, Progress
from grip.engine.workdir import read_chunk
from grip.errors import GripError
from grip.ledger import Ledger, OutcomeEntry, RunInfo, Stage
from grip.ledger.repository import now

if TYPE_CHECKING:
    from grip.api import GripClient

log = logging.getLogger(__name__)

FLUSH_EVERY = 200
"""Outcomes written to the ledger in one transaction, at most."""
FLUSH_SECONDS = 1.0
"""Seconds after which buffered outcomes are written even if fewer than FLUSH_EVERY."""


@dataclass(frozen=True)
class ChunkResult:
    """What became of one push chunk."""

    run_id: int
    chunk_no: int
    created: int
    updated: int
    rejected: int
    failed: int
    skipped: int
    seconds: float


def push_chunk(
    run_id: int,
    chunk_no: int,
    client: GripClient,
    *,
    ledger: Ledger,
    progress: Progress | None = None,
    flush_every: int = FLUSH_EVERY,
    flush_seconds: float = FLUSH_SECONDS,
) -> ChunkResult:
    """Push one chunk of a run, writing outcomes to the ledger in small transactions.

    Safe to call again for the same chunk (an Airflow retry): records whose outcome this run
    already recorded are not sent again, and a chunk that is done is left as it is.

    Raises:
        ApiAuthError: Grip refused the token; the chunk is marked failed.
        LedgerError: the run or chunk is unknown, or the ledger cannot be written.
    """
    progress = progress or NoProgress()
    run = ledger.run(run_id)
    chunk = ledger.chunk(run_id, chunk_no)
    if chunk.status == "done":
        log.info("run %d chunk %d was pushed already", run_id, chunk_no)
        return ChunkResult(
            run_id,
            chunk_no,
            chunk.created,
            chunk.updated,
            chunk.rejected,
            chunk.failed,
            chunk.rows,
            chunk.seconds,
        )
    frame = read_chunk(chunk.path)
    keys = list(zip(frame["data_type"], frame["registration_id"], strict=True))
    handled = ledger.outcomes_in_run(run.integration, run_id, keys)
    if handled:
        frame = frame[[key not in handled for key in keys]]
        log.info(
            "run %d chunk %d: %d records were pushed before a restart",
            run_id,
            chunk_no,
            len(handled),
        )
    if run.stage == "sample":
        _mark_sample_pushed(ledger, run)

    ledger.update_chunk(run_id, chunk_no, status="running", started_at=now())
    lookup = {
        str(rid): (str(dt), str(h), int(row), None if pd.isna(src) else int(src), str(text))
        for dt, rid, h, row, src, text in zip(
            frame["data_type"],
            frame["registration_id"],
            frame["content_hash"],
            frame["source_row"],
            frame["source_hash"],
            frame["payload_json"],
            strict=True,
        )
    }
    texts = frame["payload_json"].tolist()
    counts: Counter[str] = Counter()
    buffer: list[OutcomeEntry] = []
    last_flush = time.monotonic()
    started = time.monotonic()

    def flush() -> None:
        nonlocal last_flush
        if buffer:
            ledger.record_outcomes(run_id, buffer, integration=run.integration, chunk_no=chunk_no)
            buffer.clear()
        last_flush = time.monotonic()

    try:
        for outcome in client.push((json.loads(text) for text in texts), total=len(texts)):
            data_type, digest, row, source_hash, text = lookup[outcome.registration_id]
            accepted = outcome.outcome.value in ("created", "updated")
            buffer.append(
                OutcomeEntry(
                    data_type=data_type,
                    registration_id=outcome.registration_id,
                    outcome=outcome.outcome.value,
                    content_hash=digest,
                    payload_json=text if accepted else None,
                    grip_id=outcome.grip_id,
                    status=outcome.status,
                    attempts=outcome.attempts,
                    reason=outcome.reason,
                    source_row=row,
                    source_hash=source_hash,
                )
            )
            counts[outcome.outcome.value] += 1
            progress.advance("push", 1)
            if len(buffer) >= flush_every or time.monotonic() - last_flush >= flush_seconds:
                flush()
    except BaseException:
        try:
            flush()
            ledger.update_chunk(
                run_id,
                chunk_no,
                status="failed",
                ended_at=now(),
                seconds=chunk.seconds + time.monotonic() - started,
            )
        except GripError:
            log.exception("run %d chunk %d: could not record the last outcomes", run_id, chunk_no)
        raise
    flush()
    seconds = chunk.seconds + time.monotonic() - started
    ledger.update_chunk(run_id, chunk_no, status="done", ended_at=now(), seconds=seconds)
    done = ledger.chunk(run_id, chunk_no)
    log.info(
        "run %d chunk %d: %d created, %d updated, %d rejected, %d failed in %.1f s",
        run_id,
        chunk_no,
        counts["created"],
        counts["updated"],
        counts["rejected"],
        counts["failed"],
        seconds,
    )
    return ChunkResult(
        run_id,
        chunk_no,
        done.created,
        done.updated,
        done.rejected,
        done.failed,
        len(handled),
        seconds,
    )


def _mark_sample_pushed(ledger: Ledger, run: RunInfo) -> None:
    state = ledger.integration(run.integration)
    if state is None or state.sample_run_id != run.id:
        ledger.set_stage(
            run.integration,
            Stage.SAMPLE_PUSHED,
            sample_run_id=run.id,
            sample_fingerprint=run.fingerprint,
        )
