"""Run and sample reports: a Markdown summary, the same as JSON, and a CSV of every problem."""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from grip.ledger import Problem

log = logging.getLogger(__name__)

SUMMARY_MD = "summary.md"
SUMMARY_JSON = "summary.json"
PROBLEMS_CSV = "rejects.csv"
VANISHED_CSV = "vanished.csv"
CSV_COLUMNS = (
    "data_type",
    "registration_id",
    "source_row",
    "stage",
    "outcome",
    "status",
    "reasons",
)

_CELL = 80
_STEPS = ("read", "map", "validate", "plan", "ledger", "push", "read_back", "finish")
COUNT_LABELS = (
    ("read", "rows read from the source"),
    ("filtered", "left out by the mapping's filters"),
    ("invalid", "rejected by validation (and duplicates)"),
    ("planned_new", "planned: new"),
    ("planned_changed", "planned: changed"),
    ("planned_unchanged", "planned: unchanged (not sent)"),
    ("skipped_unchanged", "of which not mapped again (source row unchanged)"),
    ("planned_retry", "planned: retry of an earlier failure"),
    ("planned_held", "planned: rejected before with the same content"),
    ("vanished", "gone from the source (reported, not deleted)"),
    ("to_push", "to push"),
    ("created", "created in Grip"),
    ("updated", "updated in Grip"),
    ("rejected", "rejected by the Grip API"),
    ("failed", "failed (no answer after retries)"),
)


@dataclass
class ReadBackSummary:
    """What reading the sample back from Grip showed."""

    checked: int
    differences: list[dict[str, Any]] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not self.differences and not self.missing


@dataclass
class SampleSection:
    """The part of a sample run's report the project manager reviews."""

    payloads: list[dict[str, Any]] = field(default_factory=list)
    coverage: dict[str, Any] = field(default_factory=dict)
    read_back: ReadBackSummary | None = None


@dataclass
class RunReport:
    """Everything a run's report shows; built by the engine, written by :func:`write_report`.

    Attributes:
        integration: the integration's name.
        stage: sample, full or sync.
        run_id: the ledger's id of the run (``None`` for a dry run, which writes no ledger).
        dry_run: whether the run only planned.
        status: running, succeeded, partial, failed, abandoned, or planned for a dry run.
        counts: the run's counters (see :data:`grip.ledger.RUN_COUNTERS`).
        timings: seconds spent per step (read, map, validate, plan, push, read_back, finish).
        validation_reasons: validation rejects by reason.
        api_reasons: API rejections and failures by reason.
        examples: a few field changes of changed records (field, old, new).
        vanished: the first records that are gone from the source.
        sample: the sample review (preview, coverage, read-back), for sample runs.
        client: request counters of the Grip client.
        sources: what was read (one line per data type) and the files.
        warnings: things the reader must know (a stage that would be refused, and so on).
    """

    integration: str
    stage: str
    run_id: int | None
    dry_run: bool
    status: str
    started_at: datetime
    ended_at: datetime | None = None
    fingerprint: str | None = None
    counts: dict[str, int] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    validation_reasons: dict[str, int] = field(default_factory=dict)
    api_reasons: dict[str, int] = field(default_factory=dict)
    examples: list[dict[str, Any]] = field(default_factory=list)
    vanished: list[dict[str, Any]] = field(default_factory=list)
    sample: SampleSection | None = None
    client: dict[str, Any] = field(default_factory=dict)
    sources: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    message: str | None = None
    report_dir: str | None = None

    @property
    def title(self) -> str:
        kind = "Dry run" if self.dry_run else f"Run {self.run_id}"
        return f"{kind} of {self.integration}: {self.stage}, {self.status}"

    @property
    def elapsed(self) -> float:
        """Seconds from start to end (to now while the run goes on)."""
        end = self.ended_at or datetime.now(UTC)
        return max((_aware(end) - _aware(self.started_at)).total_seconds(), 0.0)

    @property
    def pushed(self) -> int:
        return sum(self.counts.get(k, 0) for k in ("created", "updated", "rejected", "failed"))

    @property
    def push_rate(self) -> float | None:
        """Records answered per second of push time, when anything was pushed."""
        seconds = self.timings.get("push", 0.0)
        return self.pushed / seconds if self.pushed and seconds > 0 else None

    @property
    def read_rate(self) -> float | None:
        """Source rows per second from reading to the end of the plan."""
        seconds = sum(self.timings.get(step, 0.0) for step in ("read", "map", "validate", "plan"))
        read = self.counts.get("read", 0)
        return read / seconds if read and seconds > 0 else None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form of the report."""
        data = asdict(self)
        data["started_at"] = _iso(self.started_at)
        data["ended_at"] = _iso(self.ended_at)
        data["elapsed_seconds"] = round(self.elapsed, 3)
        data["push_rate"] = _round(self.push_rate)
        data["read_rate"] = _round(self.read_rate)
        return data


@dataclass(frozen=True)
class ReportFiles:
    """Where a report was written."""

    folder: Path
    markdown: Path
    json: Path
    problems: Path
    vanished: Path | None = None


def write_report(
    report: RunReport,
    problems: Iterable[Problem],
    folder: Path,
    *,
    vanished: Iterable[Mapping[str, Any]] = (),
) -> ReportFiles:
    """Write the Markdown summary, the JSON summary and the CSV of problems into ``folder``.

    The CSV has one line per record set aside or not accepted: its key, source row, the stage
    that stopped it (source, validation, plan, api) and the reasons. It never holds a payload
    or a token.
    """
    folder.mkdir(parents=True, exist_ok=True)
    report.report_dir = str(folder)
    csv_path = folder / PROBLEMS_CSV
    with csv_path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(CSV_COLUMNS)
        for p in problems:
            writer.writerow(
                [
                    p.data_type,
                    p.registration_id or "",
                    "" if p.source_row is None else p.source_row,
                    p.step,
                    p.outcome,
                    "" if p.status is None else p.status,
                    p.reasons,
                ]
            )
    vanished_path = None
    rows = list(vanished)
    if rows:
        vanished_path = folder / VANISHED_CSV
        with vanished_path.open("w", encoding="utf-8", newline="") as handle:
            table = csv.DictWriter(handle, fieldnames=list(rows[0]))
            table.writeheader()
            table.writerows(rows)
    json_path = folder / SUMMARY_JSON
    json_path.write_text(
        json.dumps(report.to_dict(), indent=2, ensure_ascii=False, default=str) + "\n",
        encoding="utf-8",
    )
    md_path = folder / SUMMARY_MD
    md_path.write_text(render_markdown(report), encoding="utf-8")
    log.info("report of %s written to %s", report.title, folder)
    return ReportFiles(folder, md_path, json_path, csv_path, vanished_path)


def read_report(folder: Path | str) -> dict[str, Any]:
    """Load the JSON summary of a report folder."""
    data: dict[str, Any] = json.loads((Path(folder) / SUMMARY_JSON).read_text(encoding="utf-8"))
    return data


def render_markdown(report: RunReport, *, for_approval: bool = False) -> str:
    """Render the report as Markdown.

    With ``for_approval`` the text is the body of the approval page: the sample, its read-back
    and the rejects first, and none of the timing detail a reviewer does not need.
    """
    out: list[str] = [f"# {report.title}", ""]
    if report.dry_run:
        out += ["> Dry run: nothing was sent and the ledger was not changed.", ""]
    for warning in report.warnings:
        out += [f"> **Warning:** {_inline(warning)}", ""]
    if report.message:
        out += [f"> {_inline(report.message)}", ""]
    out += _facts(report)
    if report.sample is not None:
        out += _sample_section(report.sample)
    out += _counts(report)
    out += _reasons("Validation rejects by reason", report.validation_reasons)
    out += _reasons("API rejections and failures by reason", report.api_reasons)
    out += _examples(report.examples)
    out += _vanished(report)
    if not for_approval:
        out += _timings(report)
    if report.sample is not None and report.sample.payloads:
        out += _preview(report.sample.payloads)
    return "\n".join(out).rstrip() + "\n"


def approval_markdown(report: RunReport) -> str:
    """The sample report as the approval page shows it to the project manager."""
    return render_markdown(report, for_approval=True)


def _facts(report: RunReport) -> list[str]:
    rows = [
        ("integration", f"`{report.integration}`"),
        ("stage", report.stage),
        ("status", f"**{report.status}**"),
        ("started", _stamp(report.started_at)),
        ("ended", _stamp(report.ended_at) if report.ended_at else "not yet"),
        ("duration", _seconds(report.elapsed)),
    ]
    if report.fingerprint:
        rows.append(("mappings fingerprint", f"`{report.fingerprint[:16]}`"))
    for source in report.sources:
        rows.append((f"source ({source.get('data_type', '')})", _inline(source.get("describe"))))
        for item in source.get("files", []):
            rows.append(("file", _inline(f"{item.get('name')} ({item.get('size')} bytes)")))
    lines = ["| | |", "| --- | --- |"]
    lines += [f"| {name} | {value} |" for name, value in rows]
    return [*lines, ""]


def _counts(report: RunReport) -> list[str]:
    lines = ["## Counts", "", "| | records |", "| --- | ---: |"]
    for key, label in COUNT_LABELS:
        if key in report.counts:
            lines.append(f"| {label} | {report.counts[key]:,} |")
    return [*lines, ""]


def _reasons(title: str, reasons: Mapping[str, int]) -> list[str]:
    if not reasons:
        return []
    lines = [f"## {title}", "", "| reason | records |", "| --- | ---: |"]
    for reason, count in sorted(reasons.items(), key=lambda item: (-item[1], item[0]))[:50]:
        lines.append(f"| {_cell(reason, 160)} | {count:,} |")
    if len(reasons) > 50:
        lines.append(f"| ... {len(reasons) - 50} more reasons, see {PROBLEMS_CSV} | |")
    return [*lines, ""]


def _examples(examples: list[dict[str, Any]]) -> list[str]:
    if not examples:
        return []
    lines = [
        "## Example differences",
        "",
        "What Grip holds (old) and what the run sends (new) for a few changed records.",
        "",
        "| data type | registration id | field | old | new |",
        "| --- | --- | --- | --- | --- |",
    ]
    for item in examples:
        lines.append(
            f"| {item['data_type']} | {_cell(item['registration_id'])} | {_cell(item['field'])} "
            f"| {_cell(item['old'])} | {_cell(item['new'])} |"
        )
    return [*lines, ""]


def _vanished(report: RunReport) -> list[str]:
    count = report.counts.get("vanished", 0)
    if not count:
        return []
    shown = ", ".join(f"{v['data_type']} {v['registration_id']}" for v in report.vanished[:10])
    more = f" and {count - 10:,} more" if count > 10 else ""
    return [
        "## Gone from the source",
        "",
        f"{count:,} records that Grip holds were not in the source this time: {shown}{more}. "
        f"They are reported, not deleted (see {VANISHED_CSV}).",
        "",
    ]


def _timings(report: RunReport) -> list[str]:
    if not report.timings:
        return []
    total = sum(report.timings.values()) or 1.0
    lines = ["## Time per step", "", "| step | seconds | share |", "| --- | ---: | ---: |"]
    for step in [*_STEPS, *sorted(set(report.timings) - set(_STEPS))]:
        if step in report.timings:
            seconds = report.timings[step]
            lines.append(f"| {step} | {seconds:,.2f} | {seconds / total:.0%} |")
    lines.append("")
    if report.read_rate:
        lines.append(f"Read to plan: {report.read_rate:,.0f} rows/s.")
    if report.push_rate:
        lines.append(f"Push: {report.push_rate:,.1f} records/s.")
    if report.client:
        c = report.client
        lines.append(
            f"Grip client: {c.get('requests', 0):,} requests, {c.get('retries', 0):,} retries, "
            f"{c.get('throttled', 0):,} throttled (429)."
        )
    return [*lines, ""]


def _sample_section(sample: SampleSection) -> list[str]:
    out = ["## Sample", ""]
    cov = sample.coverage
    if cov:
        out.append(
            f"{cov.get('records', len(sample.payloads))} records covering data types "
            f"{', '.join(cov.get('data_types', [])) or 'none'} and languages "
            f"{', '.join(cov.get('languages', [])) or 'none'}."
        )
        rare = {dt: names for dt, names in cov.get("often_empty_fields", {}).items() if names}
        if rare:
            parts = [f"{dt}: {', '.join(names)}" for dt, names in sorted(rare.items())]
            out.append(f"Fields that are often empty, shown filled: {'; '.join(parts)}.")
        if cov.get("not_shown"):
            out.append(f"Not shown by any sampled record: {', '.join(cov['not_shown'])}.")
        out.append("")
    rb = sample.read_back
    if rb is not None:
        out += ["### Read back from Grip", ""]
        if rb.clean:
            out.append(f"All {rb.checked} accepted records read back exactly as sent.")
        else:
            out.append(
                f"{rb.checked} records checked: {len(rb.differences)} differences, "
                f"{len(rb.missing)} missing."
            )
        if rb.differences:
            out += [
                "",
                "| registration id | field | sent | stored |",
                "| --- | --- | --- | --- |",
            ]
            for d in rb.differences[:100]:
                out.append(
                    f"| {_cell(d['registration_id'])} | {_cell(d['field'])} | {_cell(d['sent'])} "
                    f"| {_cell(d['stored'])} |"
                )
        if rb.missing:
            out += ["", f"Missing in Grip: {', '.join(rb.missing[:50])}."]
        out.append("")
    return out


def _preview(payloads: list[dict[str, Any]]) -> list[str]:
    out = ["## Payload preview", ""]
    for payload in payloads:
        out += [
            f"### {_inline(payload.get('registration_id'))}",
            "",
            "```json",
            json.dumps(payload, indent=2, ensure_ascii=False, sort_keys=True),
            "```",
            "",
        ]
    return out


def _cell(value: Any, limit: int = _CELL) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    text = text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ").replace("\r", " ")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _inline(value: Any) -> str:
    return str(value).replace("\n", " ").replace("|", "\\|")


def _aware(stamp: datetime) -> datetime:
    return stamp if stamp.tzinfo is not None else stamp.replace(tzinfo=UTC)


def _iso(stamp: datetime | None) -> str | None:
    return None if stamp is None else _aware(stamp).isoformat()


def _stamp(stamp: datetime | None) -> str:
    return "" if stamp is None else _aware(stamp).strftime("%Y-%m-%d %H:%M:%S UTC")


def _seconds(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if hours else f"{minutes} min {rest} s"


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)
