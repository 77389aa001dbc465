"""Preparing a run: read, map, validate and plan every data type; write the push chunks."""

from __future__ import annotations

import contextlib
import functools
import logging
import shutil
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Collection, Generator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa

from grip.config import Integration
from grip.engine.bulk import bulk_work
from grip.engine.common import jsonable, load_mappings, reason_key, rounded
from grip.engine.finish import fail_quietly
from grip.engine.gate import check_stage, mappings_fingerprint, refusal
from grip.engine.plan import (
    Action,
    ExampleKeeper,
    LedgerIndex,
    PlanCounts,
    accepted_mask,
    find_duplicates,
    hash_payloads,
    to_push,
)
from grip.engine.prefetch import prefetch
from grip.engine.progress import NoProgress, Progress
from grip.engine.rowhash import hash_joined, join_columns, source_seed
from grip.engine.sample import SampleSelector
from grip.engine.workdir import (
    ChunkFile,
    ChunkWriter,
    default_report_root,
    default_work_root,
    drop_keys,
    iter_chunks,
    run_folder_name,
)
from grip.errors import ConfigError
from grip.ledger import FATE_FILTERED, FileEntry, Ledger, Problem, RowFate, Stage
from grip.ledger.repository import encode_watermark, now

if TYPE_CHECKING:
    from grip.mapping import MappingSpec
    from grip.sources import Source

log = logging.getLogger(__name__)

STALE_AFTER = timedelta(hours=6)
"""A run that has not written to the ledger for this long is taken for dead."""
EXAMPLES = 5
_PROBLEM_BATCH = 20_000
"""Problems known from the ledger already, written in one batch at most this large."""
_HASHED_AHEAD = 8
"""Chunks hashed, at most, before the ledger's side has loaded."""
VANISHED_SHOWN = 20
CANDIDATE_CHUNK = 50_000
TEXT = pd.ArrowDtype(pa.string())

SourceBuilder = Callable[..., "Source"]
"""``build_source``'s signature: ``(config, *, base_dir, engine, sftp_client, processed,
watermark, required_columns) -> Source``. The Airflow layer passes one that builds engines and
SFTP clients from connections."""


@dataclass
class RunPlan:
    """What :func:`prepare_run` decided: the counts, the push chunks, where things lie.

    Attributes:
        integration: the integration's name.
        stage: sample, full or sync.
        run_id: the ledger's id of the run; ``None`` for a dry run.
        dry_run: whether the run only plans.
        fingerprint: the mappings' fingerprint.
        counts: read, filtered, invalid, planned_*, vanished, to_push, chunks.
        chunks: the Parquet files of records to push, in order.
        work_dir: the run's work folder (chunk files; removed when the run finishes).
        report_dir: where the run's report goes.
        details: timings, reasons, examples, sources and other report material.
        problems: for a dry run, the records set aside (a real run keeps them in the ledger).
    """

    integration: str
    stage: str
    run_id: int | None
    dry_run: bool
    fingerprint: str
    counts: dict[str, int]
    chunks: list[ChunkFile]
    work_dir: Path
    report_dir: Path
    details: dict[str, Any]
    started_at: datetime
    problems: list[Problem] = field(default_factory=list)

    @property
    def to_push(self) -> int:
        return sum(chunk.rows for chunk in self.chunks)


def prepare_run(
    integration: Integration,
    stage: str,
    *,
    ledger: Ledger,
    dry_run: bool = False,
    sample_size: int | None = None,
    sample_data_types: Collection[str] | None = None,
    source_builder: SourceBuilder | None = None,
    engine: Any = None,
    sftp_client: Any = None,
    work_root: Path | None = None,
    report_root: Path | None = None,
    label: str | None = None,
    progress: Progress | None = None,
    pid: int | None = None,
) -> RunPlan:
    """Read, map, validate and plan a stage, and write the records to push as chunk files.

    A real run is registered in the ledger with its counts, its validation rejects and its
    chunks; a dry run writes nothing to the ledger, the watermarks or the processed files.

    Args:
        integration: the loaded integration file.
        stage: ``sample``, ``full`` or ``sync``.
        ledger: the ledger.
        dry_run: only plan; the plan and a report are the whole result.
        sample_size: records in a sample (10 to 50); the integration's ``sample_size`` if None.
        sample_data_types: the data types a sample is drawn from; every data type if None.
            Every data type is still read and validated, and the approval covers them all.
        source_builder: builds each data type's source; ``grip.sources.build_source`` if None.
        engine: a SQLAlchemy engine for SQL sources (Airflow passes one built from a conn).
        sftp_client: an open SFTP client for SFTP sources.
        work_root: folder of the runs' work folders; ``GRIP_WORK_DIR`` or ``var/work``.
            Airflow workers must share it.
        report_root: folder of the reports; the integration's ``report_dir``,
            ``GRIP_REPORT_DIR`` or ``var/reports``.
        label: free text kept with the run (an Airflow run id, for instance).
        progress: progress receiver.
        pid: the process that will run every piece of the stage, when one does (the CLI).

    Returns:
        The plan, with the run id and its chunk files.

    Raises:
        StageRefusedError: full or sync without an approved sample, or mappings that changed
            since the approval (not for a dry run, whose report carries the warning instead).
        ConfigError, SourceError, MappingError, DataValidationError: the run cannot go on; a
            registered run is marked failed, with a report of what was found until then.
    """
    spec = integration.spec
    if sample_size is not None and not 1 <= sample_size <= 50:
        raise ConfigError(f"sample size {sample_size} is out of range: choose 10 to 50 records")
    if sample_data_types is not None:
        unknown = sorted(set(sample_data_types) - set(spec.data_types))
        if unknown or not sample_data_types:
            raise ConfigError(
                f"sample data types {sorted(sample_data_types)} of {spec.name}: choose one or "
                f"more of {', '.join(spec.data_types)}"
            )
    mappings = load_mappings(integration)
    fingerprint = mappings_fingerprint({dt: m.fingerprint for dt, m in mappings.items()})
    state = ledger.integration(spec.name)
    warnings: list[str] = []
    if dry_run:
        reason = refusal(spec.name, stage, state, fingerprint)
        if reason is not None:
            warnings.append(f"a real {stage} run would be refused: {reason}")
    else:
        check_stage(spec.name, stage, state, fingerprint)
        ledger.abandon_stale_runs(spec.name, stale_after=STALE_AFTER)

    run_id = None
    if not dry_run:
        run_id = ledger.start_run(spec.name, stage, fingerprint=fingerprint, label=label, pid=pid)
    folder = run_folder_name(run_id, stage)
    if report_root is None:
        report_root = integration.resolve(spec.report_dir) if spec.report_dir else None
    work_dir = (work_root or default_work_root()) / spec.name / folder
    report_dir = (report_root or default_report_root()) / spec.name / folder
    if run_id is not None:
        ledger.update_run(run_id, work_dir=str(work_dir), report_dir=str(report_dir))
    log.info(
        "%s %s of %s: reading %d data type(s)",
        "dry run" if dry_run else f"run {run_id}",
        stage,
        spec.name,
        len(mappings),
    )
    preparer = _Preparer(
        integration=integration,
        stage=stage,
        ledger=ledger,
        run_id=run_id,
        mappings=mappings,
        work_dir=work_dir,
        report_dir=report_dir,
        sample_size=sample_size or spec.sample_size,
        sample_data_types=None if sample_data_types is None else frozenset(sample_data_types),
        source_builder=source_builder,
        engine=engine,
        sftp_client=sftp_client,
        progress=progress or NoProgress(),
    )
    try:
        with bulk_work():
            plan = preparer.run(fingerprint, warnings, state)
    except BaseException as err:
        if run_id is not None:
            with contextlib.suppress(Exception):
                preparer.flush_problems()  # the rejects are what the failure report is for
            fail_quietly(ledger, run_id, err, preparer.partial_details(), preparer.counts_so_far())
        shutil.rmtree(work_dir, ignore_errors=True)
        raise
    return plan


class _Preparer:
    """The state of one prepare: counters, rejects, keys seen, the chunk writer."""

    def __init__(
        self,
        *,
        integration: Integration,
        stage: str,
        ledger: Ledger,
        run_id: int | None,
        mappings: dict[str, MappingSpec],
        work_dir: Path,
        report_dir: Path,
        sample_size: int,
        sample_data_types: frozenset[str] | None,
        source_builder: SourceBuilder | None,
        engine: Any,
        sftp_client: Any,
        progress: Progress,
    ):
        self.integration = integration
        self.spec = integration.spec
        self.name = integration.spec.name
        self.stage = stage
        self.ledger = ledger
        self.run_id = run_id
        self.dry_run = run_id is None
        self.mappings = mappings
        self.work_dir = work_dir
        self.report_dir = report_dir
        self.source_builder = source_builder
        self.engine = engine
        self.sftp_client = sftp_client
        self.progress = progress
        self.started_at = now()
        self.timings: defaultdict[str, float] = defaultdict(float)
        self.plan_counts = PlanCounts()
        self.read = 0
        self.invalid = 0
        self.filtered: Counter[str] = Counter()
        self.validation_reasons: Counter[str] = Counter()
        self.memory_problems: list[Problem] = []
        self.keys: list[pd.DataFrame] = []
        self.examples = ExampleKeeper(EXAMPLES)
        self.sources: list[dict[str, Any]] = []
        self.watermarks: dict[str, Any] = {}
        self.files: list[FileEntry] = []
        self.snapshot_types: list[str] = []
        # NOTE: only a sync skips unchanged rows; full and sample runs map every row, so a full
        # run is the way to re-map everything (after a release that changes the mapping code)
        self.fast_path = stage == "sync"
        self.fast_rows = 0
        # NOTE: fates to write; those found again as they were are only kept, by source hash
        self.fates: defaultdict[str, list[RowFate]] = defaultdict(list)
        self.kept_fates: defaultdict[str, list[np.ndarray]] = defaultdict(list)
        self.fast_positions: defaultdict[str, list[np.ndarray]] = defaultdict(list)
        self.data_docs: dict[str, str] = {}
        # NOTE: ledger writes happen inside the plan's timed blocks; they are counted apart
        self._ledger_seconds = 0.0
        self._unwritten: list[Problem] = []
        self.rejects_of_type: list[Any] = []
        from grip.validation import KeySet

        # NOTE: one key set for the whole run: a registration_id may appear once, whatever
        # the data type (Grip keys profiles by it within the application).
        self.key_set = KeySet()
        self.sample = stage == "sample"
        self.sample_data_types = sample_data_types
        self.selector = SampleSelector(sample_size, self.spec.application.languages)
        self.writer = ChunkWriter(
            work_dir,
            "candidates" if self.sample else "chunk",
            CANDIDATE_CHUNK if self.sample else self.spec.limits.chunk_size,
        )

    def step_timings(self) -> dict[str, float]:
        timings = dict(self.timings)
        timings["plan"] = max(timings.get("plan", 0.0) - self._ledger_seconds, 0.0)
        timings["ledger"] = self._ledger_seconds
        return rounded(timings)

    def partial_details(self) -> dict[str, Any]:
        return {
            "timings": self.step_timings(),
            "filtered_reasons": dict(self.filtered),
            "validation_reasons": dict(self.validation_reasons),
            "sources": self.sources,
            "data_docs": self.data_docs,
        }

    def counts_so_far(self) -> dict[str, int]:
        return {
            "read": self.read,
            "filtered": sum(self.filtered.values()),
            "invalid": self.invalid,
        }

    def _load_index(self) -> LedgerIndex:
        if not self.fast_path:
            return LedgerIndex(self.ledger.load_state(self.name, list(self.mappings)))
        # NOTE: a sync compares most rows by their source hash alone: the content hashes of
        # the few records whose rows changed are asked for as they come
        data_types = list(self.mappings)
        return LedgerIndex(
            self.ledger.load_state(self.name, data_types, hashes=False),
            self.ledger.load_fates(self.name, data_types),
            functools.partial(self.ledger.content_state, self.name),
            functools.partial(self.ledger.load_state, self.name, data_types),
        )

    def run(self, fingerprint: str, warnings: list[str], state: Any) -> RunPlan:
        wall = time.perf_counter()
        # NOTE: the ledger's side is read while the source opens and its first chunks arrive
        with ThreadPoolExecutor(1, thread_name_prefix="grip-ledger-read") as pool:
            loading = pool.submit(self._load_index)
            self.progress.start("read", None)
            for data_type, mapping in self.mappings.items():
                self._data_type(data_type, mapping, loading)
                self.flush_problems()
            index = loading.result()
        self.progress.finish("read")

        started = time.perf_counter()
        banned = self._duplicates(index)
        chunks = self._chunks(banned)
        vanished = self._vanished(index)
        self._save_fates()
        changes = self.examples.changes(
            self.ledger.accepted_payloads(
                self.name, [(dt, rid) for dt, rid, _ in self.examples.items]
            )
        )
        self.timings["plan"] += time.perf_counter() - started

        counts = {
            "read": self.read,
            "filtered": sum(self.filtered.values()),
            "invalid": self.invalid,
            "planned_new": self.plan_counts.new,
            "planned_changed": self.plan_counts.changed,
            "planned_unchanged": self.plan_counts.unchanged,
            "planned_retry": self.plan_counts.retry,
            "planned_held": self.plan_counts.held,
            "vanished": self.plan_counts.vanished,
            "to_push": sum(c.rows for c in chunks),
            "chunks": len(chunks),
        }
        details: dict[str, Any] = {
            **self.partial_details(),
            "examples": [c.as_dict() for c in changes],
            "vanished": vanished[:VANISHED_SHOWN],
            "watermarks": {dt: encode_watermark(v) for dt, v in self.watermarks.items()},
            "warnings": warnings,
            "rows_skipped_unchanged": self.fast_rows,
            "prepare_seconds": round(time.perf_counter() - wall, 3),
            "stage_before": state.stage.value if state is not None else Stage.NEW.value,
        }
        if self.sample:
            details["sample"] = {"coverage": self.selector.coverage()}
        if self.run_id is not None:
            self.ledger.add_chunks(self.run_id, [(c.chunk_no, str(c.path), c.rows) for c in chunks])
            self.ledger.add_files(self.run_id, self.name, self.files)
            self.ledger.update_run(self.run_id, details=jsonable(details), **counts)
        log.info(
            "planned %s of %s: %d read, %d filtered, %d invalid, %d new, %d changed, "
            "%d unchanged (%d of them not mapped again), %d retry, %d held, %d vanished; "
            "%d to push in %d chunks",
            self.stage,
            self.name,
            counts["read"],
            counts["filtered"],
            counts["invalid"],
            counts["planned_new"],
            counts["planned_changed"],
            counts["planned_unchanged"],
            self.fast_rows,
            counts["planned_retry"],
            counts["planned_held"],
            counts["vanished"],
            counts["to_push"],
            counts["chunks"],
        )
        return RunPlan(
            integration=self.name,
            stage=self.stage,
            run_id=self.run_id,
            dry_run=self.dry_run,
            fingerprint=fingerprint,
            counts=counts,
            chunks=chunks,
            work_dir=self.work_dir,
            report_dir=self.report_dir,
            details=details,
            started_at=self.started_at,
            problems=self.memory_problems,
        )

    # -- one data type ------------------------------------------------------------------------

    def _data_type(
        self, data_type: str, mapping: MappingSpec, loading: Future[LedgerIndex]
    ) -> None:
        from grip.mapping import Mapper
        from grip.sources import SourceFile, build_source
        from grip.validation import Validator, check_reject_share, reason_counts

        config = self.spec.data_types[data_type].source
        incremental = self.stage == "sync"
        processed: list[SourceFile] = []
        watermark = None
        if incremental:
            processed = [
                SourceFile(
                    f.name, f.size or 0, datetime.fromtimestamp(f.mtime or 0, UTC), f.sha256 or ""
                )
                for f in self.ledger.processed_files(self.name, data_type)
            ]
            watermark = self.ledger.watermark(self.name, data_type)
        builder = self.source_builder or build_source
        source = builder(
            config,
            base_dir=self.integration.folder,
            engine=self.engine,
            sftp_client=self.sftp_client,
            processed=processed,
            watermark=watermark,
            required_columns=mapping.required_columns,
        )
        mapper = Mapper(mapping)
        validator = Validator(mapping, self.spec.application, keys=self.key_set)
        read_before, invalid_before = self.read, self.invalid
        filtered_before = sum(self.filtered.values())
        columns = sorted(mapping.required_columns)
        seed = source_seed(mapping, self.spec.application)
        with source:
            frames: Generator[tuple[pd.DataFrame, pa.Array], None, None] = prefetch(
                source.chunks(), transform=lambda frame: (frame, join_columns(frame, columns))
            )
            # NOTE: chunks are hashed while the ledger's side still loads, a few at most
            waiting: list[tuple[pd.DataFrame, np.ndarray]] = []
            try:
                while True:
                    started = time.perf_counter()
                    item = next(frames, None)
                    self.timings["read"] += time.perf_counter() - started
                    if item is None:
                        break
                    started = time.perf_counter()
                    waiting.append((item[0], hash_joined(item[1], seed)))
                    self.timings["plan"] += time.perf_counter() - started
                    if loading.done() or len(waiting) >= _HASHED_AHEAD:
                        self._drain(data_type, waiting, mapper, validator, loading)
                self._drain(data_type, waiting, mapper, validator, loading)
            finally:
                frames.close()
            started = time.perf_counter()
            self._source_rejects(data_type, source)
            self.timings["plan"] += time.perf_counter() - started
            files = [
                FileEntry(data_type, f.name, f.size, f.mtime.timestamp(), f.sha256)
                for f in source.files
            ]
            self.files.extend(files)
            if source.new_watermark is not None:
                self.watermarks[data_type] = source.new_watermark
            self.sources.append(
                {
                    "data_type": data_type,
                    "describe": source.describe(),
                    "rows": self.read - read_before,
                    "files": [{"name": f.name, "size": f.size, "sha256": f.sha256} for f in files],
                    "watermark_before": jsonable(watermark),
                    "watermark_after": jsonable(source.new_watermark),
                }
            )
            if self._is_snapshot(config, watermark, files):
                self.snapshot_types.append(data_type)
        self._data_docs(data_type, validator)
        considered = self.read - read_before - (sum(self.filtered.values()) - filtered_before)
        check_reject_share(
            considered,
            self.invalid - invalid_before,
            self.spec.limits.max_reject_share,
            data_type,
            reasons=reason_counts(self.rejects_of_type),
        )
        self.rejects_of_type = []

    def _data_docs(self, data_type: str, validator: Any) -> None:
        started = time.perf_counter()
        try:
            page = validator.write_data_docs(self.report_dir / "data_docs" / data_type)
        except Exception:
            log.warning("%s: could not write the validation's Data Docs", data_type, exc_info=True)
            page = None
        if page is not None:
            self.data_docs[data_type] = str(page)
        self.timings["validate"] += time.perf_counter() - started

    def _drain(
        self,
        data_type: str,
        waiting: list[tuple[pd.DataFrame, np.ndarray]],
        mapper: Any,
        validator: Any,
        loading: Future[LedgerIndex],
    ) -> None:
        started = time.perf_counter()
        index = loading.result()
        self.timings["plan"] += time.perf_counter() - started
        for frame, source_hashes in waiting:
            self._chunk(data_type, frame, source_hashes, mapper, validator, index)
            self.progress.advance("read", len(frame))
        waiting.clear()

    def _chunk(
        self,
        data_type: str,
        frame: pd.DataFrame,
        source_hashes: np.ndarray,
        mapper: Any,
        validator: Any,
        index: LedgerIndex,
    ) -> None:
        self.read += len(frame)
        started = time.perf_counter()
        if self.fast_path:
            frame, source_hashes = self._skip_unchanged(data_type, frame, source_hashes, index)
        self.timings["plan"] += time.perf_counter() - started
        if not len(frame):
            return

        started = time.perf_counter()
        mapped = mapper.map(frame)
        self.timings["map"] += time.perf_counter() - started
        self.filtered.update({k: v for k, v in mapped.filtered.items() if v})
        by_row = pd.Series(source_hashes, index=frame.index)
        for name, rows in mapped.filtered_rows.items() if self._keeps_fates else ():
            # NOTE: a filter's verdict depends on the row alone: a sync leaves it out unmapped
            self.fates[data_type].extend(
                RowFate(int(digest), None, name, FATE_FILTERED)
                for digest in by_row.reindex(rows).to_numpy(dtype=np.int64)
            )

        started = time.perf_counter()
        validated = validator.validate(mapped)
        self.timings["validate"] += time.perf_counter() - started

        started = time.perf_counter()
        self._rejects(data_type, validated.rejects, index, by_row)
        valid = validated.valid.rows
        ids = valid["registration_id"].astype(object).to_numpy()
        payloads = valid["payload_json"].astype(object).to_numpy()
        rows = np.asarray(valid.index, dtype=np.int64)
        sources = by_row.reindex(rows).to_numpy(dtype=np.int64)
        hashes = hash_payloads(payloads)
        positions = index.positions(data_type, ids)
        repeated = self._repeats_of_fast_rows(data_type, ids, rows, sources, positions, index)
        if repeated.any():
            keep = ~repeated
            ids, payloads, rows = ids[keep], payloads[keep], rows[keep]
            sources, hashes, positions = sources[keep], hashes[keep], positions[keep]
        actions = index.classify_positions(positions, hashes)
        self.plan_counts.add(actions)
        self._keys(data_type, ids, rows, actions)
        self._refresh(data_type, ids, sources, positions, actions, index)
        if self.sample:
            if self.sample_data_types is None or data_type in self.sample_data_types:
                self.selector.offer_json(data_type, ids, payloads)
            mask = np.ones(len(ids), dtype=bool)
        else:
            mask = to_push(actions, self.stage)
        if mask.any():
            self.writer.add(
                pd.DataFrame(
                    {
                        "data_type": data_type,
                        "registration_id": ids[mask],
                        "source_row": rows[mask],
                        "source_hash": sources[mask],
                        "content_hash": hashes[mask],
                        "action": actions[mask],
                        "payload_json": payloads[mask],
                    }
                )
            )
        self.examples.offer(data_type, ids, payloads, actions)
        self.timings["plan"] += time.perf_counter() - started

    def _skip_unchanged(
        self, data_type: str, frame: pd.DataFrame, source_hashes: np.ndarray, index: LedgerIndex
    ) -> tuple[pd.DataFrame, np.ndarray]:
        """Set aside, without mapping them, the rows whose fate the ledger knows; return the rest.

        A row Grip holds unchanged is planned ``unchanged``; a row validation set aside before
        for its own content is rejected again with the same reasons. Their keys are claimed in
        the run's key set as validation would claim them.
        """
        positions = index.fast_positions(data_type, source_hashes)
        fast = positions >= 0
        # NOTE: each ledger record may be claimed by one source row only; a second row with
        # the same hash (a repeated row) takes the full path, where validation rejects it
        taken = index.seen_mask(data_type, positions[fast])
        first = ~pd.Series(positions[fast]).duplicated().to_numpy()
        claim = np.zeros(len(fast), dtype=bool)
        claim[np.flatnonzero(fast)[~taken & first]] = True
        if claim.any():
            self._skip_known_records(data_type, frame, positions, claim, index)
        known_fate = self._skip_known_fates(data_type, frame, source_hashes, ~claim, index)
        skip = claim | known_fate
        if skip.all():
            return frame.iloc[:0], source_hashes[:0]
        return frame[~skip], source_hashes[~skip]

    def _skip_known_fates(
        self,
        data_type: str,
        frame: pd.DataFrame,
        source_hashes: np.ndarray,
        candidates: np.ndarray,
        index: LedgerIndex,
    ) -> np.ndarray:
        """Set aside again rows set aside before for reasons not tied to a record.

        Rows a filter left out are left out again, counted under the filter; rows validation
        set aside are rejected again with the same reasons.
        """
        fates = np.full(len(frame), -1, dtype=np.int64)
        fates[candidates] = index.fate_positions(data_type, source_hashes[candidates])
        found = np.flatnonzero(fates >= 0)
        skip = np.zeros(len(frame), dtype=bool)
        if not len(found):
            return skip
        filtered = index.fate_outcomes(fates[found]) == FATE_FILTERED
        if filtered.any():
            out = found[filtered]
            self.filtered.update(index.fate_reasons(fates[out]).tolist())
            self.kept_fates[data_type].append(source_hashes[out])
            self.fast_rows += len(out)
            skip[out] = True
            found = found[~filtered]
            if not len(found):
                return skip
        ids = index.fate_ids(fates[found])
        stored = index.fate_reasons(fates[found])
        reasons = stored.copy()
        rows = np.asarray(frame.index[found], dtype=np.int64)
        again = np.array([rid is None for rid in ids], dtype=bool)
        # a repeated id is rejected again only while the row it repeats is in this run
        keyed = np.flatnonzero(~again)
        records = index.fate_records(data_type, fates[found][keyed])
        for i, reason in zip(
            keyed,
            self._repeat_reasons(data_type, ids[keyed], rows[keyed], records, index),
            strict=True,
        ):
            if reason is not None:
                again[i] = True
                reasons[i] = reason
        skip[found[again]] = True
        self.fast_rows += int(again.sum())
        hashes = source_hashes[found[again]]
        same = (reasons == stored)[again]
        self.kept_fates[data_type].append(hashes[same])
        problems = []
        for digest, rid, row, reason, unchanged in zip(
            hashes, ids[again], rows[again], reasons[again], same, strict=True
        ):
            if not unchanged:
                self.fates[data_type].append(RowFate(int(digest), rid, str(reason)))
            problems.append(Problem(data_type, rid, int(row), "validation", "invalid", str(reason)))
        self._fast_rejects(data_type, problems, update_records=False)
        return skip

    def _repeat_reasons(
        self,
        data_type: str,
        ids: np.ndarray,
        rows: np.ndarray,
        positions: np.ndarray,
        index: LedgerIndex,
    ) -> list[str | None]:
        """Why each row repeats a key an earlier row of this run took (None: no row did).

        ``positions`` are the ledger rows of the records the ids name (-1: none).
        """
        out: list[str | None] = [None] * len(ids)
        known = positions >= 0
        seen = np.zeros(len(ids), dtype=bool)
        seen[known] = index.seen_mask(data_type, positions[known])
        for i, (rid, row) in enumerate(zip(ids, rows, strict=True)):
            if str(rid) in self.key_set:
                # NOTE: a key the set holds already is not claimed again: this asks where it was
                key = pd.Series([str(rid)], index=[int(row)])
                out[i] = self.key_set.claim(key, data_type)[int(row)]
            elif seen[i]:
                out[i] = repeated_key(str(rid), int(index.claimed_by(positions[i : i + 1])[0]))
        return out

    def _skip_known_records(
        self,
        data_type: str,
        frame: pd.DataFrame,
        positions: np.ndarray,
        claim: np.ndarray,
        index: LedgerIndex,
    ) -> None:
        """Plan as unchanged (or invalid again) the rows whose records the ledger knows.

        NOTE: their keys are not put in the run's key set (a million of them would cost time
        and memory): each ledger record is claimed by one row only, a later row with its key
        finds it claimed (see :meth:`_repeats_of_fast_rows`), and keys repeated across data
        types are caught by the plan's last check.
        """
        claimed = positions[claim]
        rows = np.asarray(frame.index[claim], dtype=np.int64)
        index.mark_seen(data_type, claimed, rows)
        invalid = index.is_invalid(claimed)
        if invalid.any():
            bad = claimed[invalid]
            again = [
                Problem(data_type, str(rid), int(row), "validation", "invalid", str(reason))
                for rid, row, reason in zip(
                    index.registration_ids(bad), rows[invalid], index.reasons(bad), strict=True
                )
            ]
            self._fast_rejects(data_type, again, update_records=False)
        self.fast_rows += int(claim.sum())
        self.plan_counts.unchanged += int((~invalid).sum())
        self.fast_positions[data_type].append(claimed[~invalid])

    def _repeats_of_fast_rows(
        self,
        data_type: str,
        ids: np.ndarray,
        rows: np.ndarray,
        sources: np.ndarray,
        positions: np.ndarray,
        index: LedgerIndex,
    ) -> np.ndarray:
        """Valid rows whose record a row on the fast path took earlier: rejected as repeats."""
        known = positions >= 0
        first = np.full(len(positions), -1, dtype=np.int64)
        first[known] = index.claimed_by(positions[known])
        repeated = first >= 0
        if repeated.any():
            problems = [
                Problem(
                    data_type,
                    str(rid),
                    int(row),
                    "validation",
                    "invalid",
                    repeated_key(str(rid), int(at)),
                )
                for rid, row, at in zip(ids[repeated], rows[repeated], first[repeated], strict=True)
            ]
            self.fates[data_type].extend(
                RowFate(int(digest), p.registration_id, p.reasons)
                for digest, p in zip(sources[repeated], problems, strict=True)
            )
            self._fast_rejects(data_type, problems, update_records=True)
        return repeated

    def _fast_rejects(
        self, data_type: str, problems: list[Problem], *, update_records: bool
    ) -> None:
        """Count and keep rejects found without validation (as validation would report them)."""
        if not problems:
            return
        from grip.validation import Reject

        # NOTE: rows set aside again mostly share a few reasons: each is keyed once
        for reasons, count in Counter(p.reasons for p in problems).items():
            for reason in reasons.split("; "):
                self.validation_reasons[reason_key(reason)] += count
        self.rejects_of_type.extend(
            Reject(int(p.source_row or 0), p.registration_id, p.reasons.split("; "), data_type)
            for p in problems
        )
        self.invalid += len(problems)
        self._problems(problems, update_records=update_records)

    def _keys(self, data_type: str, ids: np.ndarray, rows: np.ndarray, actions: np.ndarray) -> None:
        self.keys.append(
            pd.DataFrame(
                {
                    "data_type": pd.array([data_type] * len(ids), dtype=TEXT),
                    "registration_id": pd.array(ids, dtype=TEXT),
                    "source_row": rows,
                    "action": pd.array(actions, dtype=TEXT),
                }
            )
        )

    def _rejects(
        self, data_type: str, rejects: list[Any], index: LedgerIndex, by_row: pd.Series
    ) -> None:
        problems = []
        rejected_ids = []
        self.rejects_of_type.extend(rejects)
        for reject in rejects:
            reasons = [str(r) for r in reject.reasons]
            self.validation_reasons.update(reason_key(r) for r in reasons)
            problems.append(
                Problem(
                    data_type,
                    None if reject.registration_id is None else str(reject.registration_id),
                    None if reject.source_row is None else int(reject.source_row),
                    "validation",
                    "invalid",
                    "; ".join(reasons),
                    source_hash=_hash_of(by_row, reject.source_row),
                )
            )
            if reject.registration_id is not None:
                rejected_ids.append(str(reject.registration_id))
            found = problems[-1]
            if not found.about_the_row and found.source_hash is not None:
                self.fates[data_type].append(
                    RowFate(found.source_hash, found.registration_id, found.reasons)
                )
        self.invalid += len(problems)
        index.see(data_type, np.array(rejected_ids, dtype=object))
        self._problems(problems)

    def _refresh(
        self,
        data_type: str,
        ids: np.ndarray,
        sources: np.ndarray,
        positions: np.ndarray,
        actions: np.ndarray,
        index: LedgerIndex,
    ) -> None:
        """Keep the source hash of unchanged records current, so the next sync skips them."""
        if self.run_id is None or self.sample:
            return
        unchanged = actions == Action.UNCHANGED.value
        stored = index.source_hashes(positions)
        outcomes = index.outcomes(positions)
        stale = unchanged & ((stored != sources) | (outcomes == "invalid"))
        if stale.any():
            started = time.perf_counter()
            self.ledger.refresh_unchanged(
                self.name,
                data_type,
                [(str(rid), int(h)) for rid, h in zip(ids[stale], sources[stale], strict=True)],
            )
            self._ledger_seconds += time.perf_counter() - started

    def _source_rejects(self, data_type: str, source: Source) -> None:
        problems = [
            Problem(data_type, None, r.line, "source", "invalid", f"{r.file}:{r.line}: {r.reason}")
            for r in source.rejects
        ]
        self.read += len(problems)
        self.invalid += len(problems)
        self.validation_reasons.update(reason_key(r.reason) for r in source.rejects)
        self._problems(problems)

    def _problems(self, problems: list[Problem], *, update_records: bool = True) -> None:
        """Keep problems: in memory for a dry run, else in the ledger (timed as ``ledger``).

        Problems that only repeat what the ledger's records say already are written in
        batches; the others at once, so that a record's state follows the row it came from.
        """
        if not problems:
            return
        if self.run_id is None:
            self.memory_problems.extend(problems)
            return
        if update_records:
            self._write_problems(problems, update_records=True)
            return
        self._unwritten.extend(problems)
        if len(self._unwritten) >= _PROBLEM_BATCH:
            self.flush_problems()

    def flush_problems(self) -> None:
        """Write the batched problems."""
        if self._unwritten:
            self._write_problems(self._unwritten, update_records=False)
            self._unwritten = []

    def _write_problems(self, problems: list[Problem], *, update_records: bool) -> None:
        assert self.run_id is not None
        started = time.perf_counter()
        self.ledger.record_problems(
            self.run_id, problems, integration=self.name, update_records=update_records
        )
        self._ledger_seconds += time.perf_counter() - started

    def _is_snapshot(self, config: Any, watermark: Any, files: list[FileEntry]) -> bool:
        """Whether the read saw the whole feed, so that what is missing has vanished."""
        if self.stage == "sample":
            return False
        if config.kind == "sql":
            return config.cursor_column is None or watermark is None
        return config.select == "newest" and bool(files)

    # -- after the read -----------------------------------------------------------------------

    def _duplicates(self, index: LedgerIndex) -> set[str]:
        """The last check: a registration_id in two data types (or twice, if any slipped by).

        Validation's key set sees the rows that went through validation; the rows of the fast
        path are unique within their data type by construction, so they are added here only
        when the integration has several data types.
        """
        if len(self.mappings) > 1:
            for data_type, parts in self.fast_positions.items():
                positions = np.concatenate(parts) if parts else np.array([], dtype=np.int64)
                if len(positions):
                    self._keys(
                        data_type,
                        index.registration_ids(positions),
                        index.claimed_by(positions),
                        np.full(len(positions), Action.UNCHANGED.value, dtype=object),
                    )
        if not self.keys:
            return set()
        keys = pd.concat(self.keys, ignore_index=True)
        self.keys = []
        found = find_duplicates(keys)
        if found.empty:
            return set()
        self.plan_counts.remove(found["action"].astype(str))
        self.invalid += len(found)
        problems = [
            Problem(
                str(row.data_type),
                str(row.registration_id),
                int(row.source_row),
                "plan",
                "invalid",
                str(row.reason),
            )
            for row in found.itertuples(index=False)
        ]
        self.validation_reasons.update(
            "registration_id occurs more than once in the source" for _ in problems
        )
        self._problems(problems)
        log.warning(
            "%s: %d rows share a registration_id with another row; none of them is pushed",
            self.name,
            len(found),
        )
        return set(found["registration_id"].astype(str))

    def _chunks(self, banned: set[str]) -> list[ChunkFile]:
        files = self.writer.close()
        if not self.sample:
            return drop_keys(files, banned) if banned else files
        chosen = self.selector.select(exclude=banned)
        order = {key: position for position, key in enumerate(chosen)}
        parts = []
        for frame in iter_chunks(files):
            keys = list(zip(frame["data_type"], frame["registration_id"], strict=True))
            mask = np.array([key in order for key in keys], dtype=bool)
            parts.append(frame[mask])
        for item in files:
            item.path.unlink()
        if not parts:
            return []
        picked = pd.concat(parts, ignore_index=True)
        picked["_order"] = [
            order[k] for k in zip(picked["data_type"], picked["registration_id"], strict=True)
        ]
        picked = picked.sort_values("_order")
        writer = ChunkWriter(self.work_dir, "chunk", max(len(picked), 1))
        writer.add(picked)
        return writer.close()

    @property
    def _keeps_fates(self) -> bool:
        """Whether the run writes row fates (a dry run and a sample do not)."""
        return self.run_id is not None and not self.sample

    def _save_fates(self) -> None:
        if not self._keeps_fates:
            return
        assert self.run_id is not None
        started = time.perf_counter()
        for data_type in self.mappings:
            kept = self.kept_fates.get(data_type, [])
            self.ledger.save_fates(
                self.run_id,
                self.name,
                data_type,
                self.fates.get(data_type, []),
                replace=data_type in self.snapshot_types,
                kept=np.concatenate(kept).tolist() if kept else (),
            )
        self._ledger_seconds += time.perf_counter() - started

    def _vanished(self, index: LedgerIndex) -> list[dict[str, Any]]:
        shown: list[dict[str, Any]] = []
        rows = []
        for data_type in self.snapshot_types:
            unseen = index.unseen([data_type])
            gone = unseen[accepted_mask(unseen)]
            self.plan_counts.vanished += len(gone)
            previous = self.ledger.seen_run(self.name, data_type)
            for row in gone.itertuples(index=False):
                already = not pd.isna(row.vanished_run_id)
                stored = None if pd.isna(row.last_seen_run_id) else int(row.last_seen_run_id)
                rows.append(
                    {
                        "data_type": row.data_type,
                        "registration_id": row.registration_id,
                        "last_seen_run_id": stored
                        if already
                        else max((r for r in (stored, previous) if r is not None), default=None),
                        "gone_since_run_id": int(row.vanished_run_id) if already else self.run_id,
                    }
                )
            if self.run_id is not None:
                started = time.perf_counter()
                self.ledger.mark_seen(
                    self.run_id, self.name, data_type, unseen, index.returned(data_type)
                )
                self._ledger_seconds += time.perf_counter() - started
        if rows:
            self.report_dir.mkdir(parents=True, exist_ok=True)
            pd.DataFrame(rows).to_csv(self.report_dir / "vanished.csv", index=False)
            shown = rows[:VANISHED_SHOWN]
        return shown


def _hash_of(by_row: pd.Series, row: int | None) -> int | None:
    if row is None or row not in by_row.index:
        return None
    return int(by_row.loc[row])


def repeated_key(registration_id: str, first_row: int) -> str:
    """Validation's reason for a row repeating a key (``unique_key: ...``), for the fast path."""
    return (
        f"unique_key: registration_id: {registration_id!r} is already the key of source row "
        f"{first_row} in this run"
    )
