"""Finishing a run: totals, status, watermarks, the integration's stage and the report."""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from grip.engine.common import jsonable, reason_key
from grip.engine.gate import go_live
from grip.engine.workdir import iter_chunks, read_chunk
from grip.ledger import Ledger, RunInfo, RunStatus, Stage
from grip.ledger.repository import decode_watermark, now
from grip.report import ReadBackSummary, RunReport, SampleSection, write_report

if TYPE_CHECKING:
    from grip.api import GripClient
    from grip.engine.prepare import RunPlan

log = logging.getLogger(__name__)


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
            None if sample.read_back is None else jsonable(sample.read_back.__dict__)
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
        counts={
            **run.counts,
            "skipped_unchanged": int(details.get("rows_skipped_unchanged", 0)),
            **totals,
        },
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
        details=jsonable(details),
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


def fail_quietly(
    ledger: Ledger,
    run_id: int,
    err: BaseException,
    details: dict[str, Any] | None = None,
    counts: Mapping[str, int] | None = None,
) -> None:
    """Mark a run failed with what is known so far; never hides the error that stopped it."""
    try:
        if details is not None:
            ledger.update_run(run_id, details=jsonable(details), **dict(counts or {}))
        finish_run(run_id, ledger=ledger, error=err)
    except Exception:
        log.exception("run %d: could not record why it stopped", run_id)


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
        counts={
            **plan.counts,
            "skipped_unchanged": int(plan.details.get("rows_skipped_unchanged", 0)),
        },
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
