"""Running a stage: prepare (read, map, validate, plan), push chunk by chunk, finish (report)."""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa

from grip.config import Integration
from grip.engine.gate import check_stage, go_live, mappings_fingerprint, refusal
from grip.engine.plan import (
    ExampleKeeper,
    LedgerIndex,
    PlanCounts,
    find_duplicates,
    hash_payloads,
    to_push,
)
from grip.engine.progress import NoProgress, Progress
from grip.engine.sample import SampleSelector
from grip.engine.workdir import (
    ChunkFile,
    ChunkWriter,
    default_report_root,
    default_work_root,
    drop_keys,
    iter_chunks,
    read_chunk,
    run_folder_name,
)
from grip.errors import ConfigError, GripError
from grip.ledger import (
    FileEntry,
    Ledger,
    OutcomeEntry,
    Problem,
    RunInfo,
    RunStatus,
    Stage,
    default_ledger_url,
)
from grip.ledger.repository import decode_watermark, encode_watermark, now
from grip.report import ReadBackSummary, RunReport, SampleSection, write_report

if TYPE_CHECKING:
    from grip.api import ClientSettings, GripClient
    from grip.mapping import MappingSpec
    from grip.sources import Source

log = logging.getLogger(__name__)

FLUSH_EVERY = 200
"""Outcomes written to the ledger in one transaction, at most."""
FLUSH_SECONDS = 1.0
"""Seconds after which buffered outcomes are written even if fewer than FLUSH_EVERY."""
STALE_AFTER = timedelta(hours=6)
"""A run that has not written to the ledger for this long is taken for dead."""
EXAMPLES = 5
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


def open_ledger(integration: Integration | None = None, url: str | None = None) -> Ledger:
    """Open (and migrate) the ledger for runs outside Airflow.

    The URL is, first found: ``url``, ``GRIP_LEDGER_URL``, the integration file's
    ``ledger_url``, a SQLite file ``var/ledger.sqlite`` in the current folder.
    """
    if url is None and not os.environ.get("GRIP_LEDGER_URL"):
        url = integration.spec.ledger_url if integration is not None else None
    return Ledger(url or default_ledger_url())


def load_mappings(integration: Integration) -> dict[str, MappingSpec]:
    """Load every data type's mapping of an integration (ConfigError lists what is wrong)."""
    from grip.mapping import load_mapping

    return {
        data_type: load_mapping(integration.mapping_path(data_type), integration.spec.application)
        for data_type in integration.spec.data_types
    }


def integration_fingerprint(integration: Integration) -> str:
    """The fingerprint of the integration's mappings as they are on disk now."""
    specs = load_mappings(integration)
    return mappings_fingerprint({dt: spec.fingerprint for dt, spec in specs.items()})


def reason_key(reason: str) -> str:
    """A reason without the quoted values in it, to count reasons (and keep data out of them)."""
    return re.sub(r"'[^']*'|\"[^\"]*\"", "'…'", reason).strip()


# -- prepare -------------------------------------------------------------------------------------


def prepare_run(
    integration: Integration,
    stage: str,
    *,
    ledger: Ledger,
    dry_run: bool = False,
    sample_size: int | None = None,
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
        source_builder=source_builder,
        engine=engine,
        sftp_client=sftp_client,
        progress=progress or NoProgress(),
    )
    try:
        plan = preparer.run(fingerprint, warnings, state)
    except BaseException as err:
        if run_id is not None:
            _fail_quietly(ledger, run_id, err, preparer.partial_details(), preparer.counts_so_far())
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
        self.data_docs: dict[str, str] = {}
        self.rejects_of_type: list[Any] = []
        from grip.validation import KeySet

        # NOTE: one key set for the whole run: a registration_id may appear once, whatever
        # the data type (Grip keys profiles by it within the application).
        self.key_set = KeySet()
        self.sample = stage == "sample"
        self.selector = SampleSelector(sample_size, self.spec.application.languages)
        self.writer = ChunkWriter(
            work_dir,
            "candidates" if self.sample else "chunk",
            CANDIDATE_CHUNK if self.sample else self.spec.limits.chunk_size,
        )

    def partial_details(self) -> dict[str, Any]:
        return {
            "timings": _rounded(self.timings),
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

    def run(self, fingerprint: str, warnings: list[str], state: Any) -> RunPlan:
        started = time.perf_counter()
        index = LedgerIndex(self.ledger.load_state(self.name, list(self.mappings)))
        self.timings["plan"] += time.perf_counter() - started
        self.progress.start("read", None)
        for data_type, mapping in self.mappings.items():
            self._data_type(data_type, mapping, index)
        self.progress.finish("read")

        started = time.perf_counter()
        banned = self._duplicates()
        chunks = self._chunks(banned)
        vanished = self._vanished(index)
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
            "stage_before": state.stage.value if state is not None else Stage.NEW.value,
        }
        if self.sample:
            details["sample"] = {"coverage": self.selector.coverage()}
        if self.run_id is not None:
            self.ledger.add_chunks(self.run_id, [(c.chunk_no, str(c.path), c.rows) for c in chunks])
            self.ledger.add_files(self.run_id, self.name, self.files)
            self.ledger.update_run(self.run_id, details=_jsonable(details), **counts)
        log.info(
            "planned %s of %s: %d read, %d filtered, %d invalid, %d new, %d changed, "
            "%d unchanged, %d retry, %d held, %d vanished; %d to push in %d chunks",
            self.stage,
            self.name,
            counts["read"],
            counts["filtered"],
            counts["invalid"],
            counts["planned_new"],
            counts["planned_changed"],
            counts["planned_unchanged"],
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

    def _data_type(self, data_type: str, mapping: MappingSpec, index: LedgerIndex) -> None:
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
        with source:
            frames: Iterator[pd.DataFrame] = iter(source.chunks())
            while True:
                started = time.perf_counter()
                frame = next(frames, None)
                self.timings["read"] += time.perf_counter() - started
                if frame is None:
                    break
                self._chunk(data_type, frame, mapper, validator, index)
                self.progress.advance("read", len(frame))
            self._source_rejects(data_type, source)
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
                    "watermark_before": _jsonable(watermark),
                    "watermark_after": _jsonable(source.new_watermark),
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

    def _chunk(
        self,
        data_type: str,
        frame: pd.DataFrame,
        mapper: Any,
        validator: Any,
        index: LedgerIndex,
    ) -> None:
        started = time.perf_counter()
        mapped = mapper.map(frame)
        self.timings["map"] += time.perf_counter() - started
        self.read += len(frame)
        self.filtered.update({k: v for k, v in mapped.filtered.items() if v})

        started = time.perf_counter()
        validated = validator.validate(mapped)
        self.timings["validate"] += time.perf_counter() - started

        started = time.perf_counter()
        problems = []
        rejected_ids = []
        self.rejects_of_type.extend(validated.rejects)
        for reject in validated.rejects:
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
                )
            )
            if reject.registration_id is not None:
                rejected_ids.append(str(reject.registration_id))
        self.invalid += len(problems)
        index.see(data_type, np.array(rejected_ids, dtype=object))
        self._problems(problems)

        valid = validated.valid.rows
        ids = valid["registration_id"].astype(object).to_numpy()
        payloads = valid["payload_json"].astype(object).to_numpy()
        rows = np.asarray(valid.index, dtype=np.int64)
        hashes = hash_payloads(payloads)
        actions = index.classify(data_type, ids, hashes)
        self.plan_counts.add(actions)
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
        if self.sample:
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
                        "content_hash": hashes[mask],
                        "action": actions[mask],
                        "payload_json": payloads[mask],
                    }
                )
            )
        self.examples.offer(data_type, ids, payloads, actions)
        self.timings["plan"] += time.perf_counter() - started

    def _source_rejects(self, data_type: str, source: Source) -> None:
        problems = [
            Problem(data_type, None, r.line, "source", "invalid", f"{r.file}:{r.line}: {r.reason}")
            for r in source.rejects
        ]
        self.read += len(problems)
        self.invalid += len(problems)
        self.validation_reasons.update(reason_key(r.reason) for r in source.rejects)
        self._problems(problems)

    def _problems(self, problems: list[Problem]) -> None:
        if not problems:
            return
        if self.run_id is None:
            self.memory_problems.extend(problems)
        else:
            self.ledger.record_problems(self.run_id, problems, integration=self.name)

    def _is_snapshot(self, config: Any, watermark: Any, files: list[FileEntry]) -> bool:
        """Whether the read saw the whole feed, so that what is missing has vanished."""
        if self.stage == "sample":
            return False
        if config.kind == "sql":
            return config.cursor_column is None or watermark is None
        return config.select == "newest" and bool(files)

    # -- after the read -----------------------------------------------------------------------

    def _duplicates(self) -> set[str]:
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

    def _vanished(self, index: LedgerIndex) -> list[dict[str, Any]]:
        shown: list[dict[str, Any]] = []
        rows = []
        for data_type in self.snapshot_types:
            unseen = index.unseen([data_type])
            gone = unseen[unseen["accepted_hash"].notna().to_numpy()]
            self.plan_counts.vanished += len(gone)
            for row in gone.itertuples(index=False):
                rows.append(
                    {
                        "data_type": row.data_type,
                        "registration_id": row.registration_id,
                        "last_seen_run_id": None
                        if pd.isna(row.last_seen_run_id)
                        else int(row.last_seen_run_id),
                        "gone_since_run_id": self.run_id
                        if pd.isna(row.vanished_run_id)
                        else int(row.vanished_run_id),
                    }
                )
            if self.run_id is not None:
                self.ledger.mark_seen(self.run_id, self.name, data_type, unseen)
        if rows:
            self.report_dir.mkdir(parents=True, exist_ok=True)
            pd.DataFrame(rows).to_csv(self.report_dir / "vanished.csv", index=False)
            shown = rows[:VANISHED_SHOWN]
        return shown


# -- push ----------------------------------------------------------------------------------------


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
        str(rid): (str(dt), str(h), int(row), str(text))
        for dt, rid, h, row, text in zip(
            frame["data_type"],
            frame["registration_id"],
            frame["content_hash"],
            frame["source_row"],
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
            data_type, digest, row, text = lookup[outcome.registration_id]
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


# -- finish --------------------------------------------------------------------------------------


def finish_run(
    run_id: int,
    *,
    ledger: Ledger,
    client: GripClient | None = None,
    error: BaseException | None = None,
    client_stats: Mapping[str, Any] | None = None,
) -> RunReport:
    """Close a run: totals, status, watermarks and files, the integration's stage, the report.

    A sample run is read back from Grip when a client is given, and moves the integration to
    ``awaiting_approval``. A full run that ended (with or without rejects) makes an approved
    integration live. Watermarks and processed files move only when no record failed, so that
    failures are read and retried by the next sync. The run's work folder is removed.

    Args:
        run_id: the run.
        ledger: the ledger.
        client: the Grip client, for a sample's read-back.
        error: what stopped the run, if something did; the run is marked failed.
        client_stats: request counters to show in the report.
    """
    run = ledger.run(run_id)
    chunks = ledger.chunks(run_id)
    totals = {
        k: sum(getattr(c, k) for c in chunks) for k in ("created", "updated", "rejected", "failed")
    }
    details = dict(run.details)
    timings = dict(details.get("timings", {}))
    timings["push"] = round(sum(c.seconds for c in chunks), 3)
    unfinished = [c.chunk_no for c in chunks if c.status != "done"]
    message = None
    if error is not None:
        status = RunStatus.FAILED
        message = f"the run stopped: {error}"
    elif unfinished:
        status = RunStatus.FAILED
        message = (
            f"chunk(s) {', '.join(map(str, unfinished))} were not pushed completely; run the "
            "stage again: it pushes only what Grip has not accepted"
        )
    elif totals["rejected"] or totals["failed"]:
        status = RunStatus.PARTIAL
    else:
        status = RunStatus.SUCCEEDED

    started = time.perf_counter()
    sample = None
    if run.stage == "sample":
        sample = _sample_section(
            run, chunks, client if status is not RunStatus.FAILED else None, ledger
        )
        timings["read_back"] = round(time.perf_counter() - started, 3)
    if client is not None and client_stats is None:
        client_stats = client.stats.as_dict()

    if status is not RunStatus.FAILED and totals["failed"] == 0 and run.stage != "sample":
        ledger.commit_run(run_id, run.integration, _watermarks(details.get("watermarks", {})))
    if run.stage == "sample" and status is not RunStatus.FAILED:
        ledger.set_stage(
            run.integration,
            Stage.AWAITING_APPROVAL,
            sample_run_id=run_id,
            sample_fingerprint=run.fingerprint,
        )
    if run.stage == "full" and status is not RunStatus.FAILED:
        go_live(run.integration, ledger=ledger)

    details["timings"] = timings
    if client_stats:
        details["client"] = dict(client_stats)
    if sample is not None:
        details.setdefault("sample", {})["read_back"] = (
            None if sample.read_back is None else _jsonable(sample.read_back.__dict__)
        )
    report = RunReport(
        integration=run.integration,
        stage=run.stage,
        run_id=run_id,
        dry_run=False,
        status=status.value,
        started_at=run.started_at,
        ended_at=now(),
        fingerprint=run.fingerprint,
        counts={**run.counts, **totals},
        timings=timings,
        validation_reasons=details.get("validation_reasons", {}),
        api_reasons=_api_reasons(ledger, run_id),
        examples=details.get("examples", []),
        vanished=details.get("vanished", []),
        sample=sample,
        client=dict(client_stats or {}),
        sources=details.get("sources", []),
        warnings=details.get("warnings", []),
        message=message,
    )
    if run.report_dir:
        write_report(report, ledger.problems(run_id), Path(run.report_dir))
    ledger.update_run(
        run_id,
        status=status.value,
        ended_at=report.ended_at,
        message=message,
        details=_jsonable(details),
        **totals,
    )
    if run.work_dir:
        shutil.rmtree(run.work_dir, ignore_errors=True)
    log.info(
        "run %d %s of %s %s: %d created, %d updated, %d rejected, %d failed; report in %s",
        run_id,
        run.stage,
        run.integration,
        status.value,
        totals["created"],
        totals["updated"],
        totals["rejected"],
        totals["failed"],
        run.report_dir,
    )
    return report


def _sample_section(
    run: RunInfo, chunks: list[Any], client: GripClient | None, ledger: Ledger
) -> SampleSection:
    payloads: list[dict[str, Any]] = []
    keys: list[tuple[str, str]] = []
    for chunk in chunks:
        if Path(chunk.path).exists():
            frame = read_chunk(chunk.path)
            payloads.extend(json.loads(text) for text in frame["payload_json"])
            keys.extend(zip(frame["data_type"], frame["registration_id"], strict=True))
    coverage = dict(run.details.get("sample", {}).get("coverage", {}))
    read_back = None
    if client is not None and payloads:
        outcomes = ledger.outcomes_in_run(run.integration, run.id, keys)
        sent = [
            p
            for p, key in zip(payloads, keys, strict=True)
            if outcomes.get(key) in ("created", "updated")
        ]
        if sent:
            result = client.read_back(sent)
            read_back = ReadBackSummary(
                checked=result.checked,
                differences=[
                    {
                        "registration_id": d.registration_id,
                        "field": d.field,
                        "sent": d.sent,
                        "stored": d.stored,
                    }
                    for d in result.differences
                ],
                missing=list(result.missing),
            )
    return SampleSection(payloads=payloads, coverage=coverage, read_back=read_back)


def _api_reasons(ledger: Ledger, run_id: int) -> dict[str, int]:
    out: Counter[str] = Counter()
    for (step, reasons), count in ledger.problem_reasons(run_id).items():
        if step == "api":
            out[reason_key(reasons)] += count
    return dict(out)


def _watermarks(stored: Mapping[str, Any]) -> dict[str, Any]:
    return {dt: decode_watermark(text) for dt, text in stored.items() if text is not None}


def _fail_quietly(
    ledger: Ledger,
    run_id: int,
    err: BaseException,
    details: dict[str, Any] | None = None,
    counts: Mapping[str, int] | None = None,
) -> None:
    """Mark a run failed with what is known so far; never hides the error that stopped it."""
    try:
        if details is not None:
            ledger.update_run(run_id, details=_jsonable(details), **dict(counts or {}))
        finish_run(run_id, ledger=ledger, error=err)
    except Exception:
        log.exception("run %d: could not record why it stopped", run_id)


# -- one process -----------------------------------------------------------------------------------


def run_stage(
    integration: Integration,
    stage: str,
    *,
    dry_run: bool = False,
    client: GripClient | None = None,
    client_settings: ClientSettings | None = None,
    ledger: Ledger | None = None,
    progress: Progress | None = None,
    sample_size: int | None = None,
    source_builder: SourceBuilder | None = None,
    engine: Any = None,
    sftp_client: Any = None,
    work_root: Path | None = None,
    report_root: Path | None = None,
    label: str | None = None,
) -> RunReport:
    """Run a whole stage in this process: prepare, push every chunk, finish.

    Args:
        integration: the loaded integration file.
        stage: ``sample``, ``full`` or ``sync``.
        dry_run: plan only: nothing is sent and the ledger is not changed.
        client: an open Grip client; otherwise one is built from ``client_settings`` when
            there is anything to push.
        client_settings: how to reach Grip when no client is given.
        ledger: the ledger; :func:`open_ledger` for the integration if None.
        progress: progress receiver (a progress bar in the CLI).
        sample_size, source_builder, engine, sftp_client, work_root, report_root, label:
            as for :func:`prepare_run`.

    Returns:
        The run's report (also written to its report folder).
    """
    own_ledger = ledger is None
    ledger = ledger or open_ledger(integration)
    progress = progress or NoProgress()
    try:
        plan = prepare_run(
            integration,
            stage,
            ledger=ledger,
            dry_run=dry_run,
            sample_size=sample_size,
            source_builder=source_builder,
            engine=engine,
            sftp_client=sftp_client,
            work_root=work_root,
            report_root=report_root,
            label=label,
            progress=progress,
            pid=os.getpid(),
        )
        if plan.run_id is None:
            return dry_run_report(plan)
        owned: GripClient | None = None
        try:
            if client is None and plan.to_push:
                client = owned = _new_client(client_settings)
            progress.start("push", plan.to_push)
            for chunk in plan.chunks:
                assert client is not None
                push_chunk(plan.run_id, chunk.chunk_no, client, ledger=ledger, progress=progress)
            progress.finish("push")
            return finish_run(plan.run_id, ledger=ledger, client=client)
        except BaseException as err:
            _fail_quietly(ledger, plan.run_id, err)
            raise
        finally:
            if owned is not None:
                owned.close()
    finally:
        if own_ledger:
            ledger.close()


def _new_client(settings: ClientSettings | None) -> GripClient:
    from grip.api import GripClient

    if settings is None:
        raise ConfigError(
            "there are records to push but no Grip connection: give the base URL and the token "
            "(GRIP_BASE_URL and GRIP_TOKEN for the command line)"
        )
    return GripClient(settings)


def dry_run_report(plan: RunPlan) -> RunReport:
    """Write the report of a dry run (plan, counts, example differences) and clean up."""
    sample = None
    if plan.stage == "sample":
        payloads = [
            json.loads(t) for frame in iter_chunks(plan.chunks) for t in frame["payload_json"]
        ]
        sample = SampleSection(
            payloads=payloads, coverage=plan.details.get("sample", {}).get("coverage", {})
        )
    report = RunReport(
        integration=plan.integration,
        stage=plan.stage,
        run_id=None,
        dry_run=True,
        status="planned",
        started_at=plan.started_at,
        ended_at=now(),
        fingerprint=plan.fingerprint,
        counts=dict(plan.counts),
        timings=plan.details.get("timings", {}),
        validation_reasons=plan.details.get("validation_reasons", {}),
        examples=plan.details.get("examples", []),
        vanished=plan.details.get("vanished", []),
        sample=sample,
        sources=plan.details.get("sources", []),
        warnings=plan.details.get("warnings", []),
    )
    write_report(report, plan.problems, plan.report_dir)
    shutil.rmtree(plan.work_dir, ignore_errors=True)
    return report


def _rounded(timings: Mapping[str, float]) -> dict[str, float]:
    return {step: round(seconds, 3) for step, seconds in timings.items()}


def _jsonable(value: Any) -> Any:
    """``value`` as plain JSON types; other values as the ledger's watermark text, else str."""
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    try:
        return encode_watermark(value)
    except GripError:
        return str(value)
