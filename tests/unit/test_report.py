"""Reports: Markdown, JSON and the CSV of problems, for runs, dry runs and samples."""

from __future__ import annotations

import csv
import json
from datetime import UTC, datetime, timedelta

from grip.ledger import Problem
from grip.report import (
    CSV_COLUMNS,
    ReadBackSummary,
    RunReport,
    SampleSection,
    approval_markdown,
    read_report,
    render_markdown,
    write_report,
)

START = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def _report(**overrides) -> RunReport:
    values = {
        "integration": "demo",
        "stage": "sync",
        "run_id": 7,
        "dry_run": False,
        "status": "partial",
        "started_at": START,
        "ended_at": START + timedelta(seconds=90),
        "fingerprint": "0123456789abcdef0123",
        "counts": {
            "read": 1000,
            "filtered": 10,
            "invalid": 5,
            "planned_new": 3,
            "planned_changed": 2,
            "planned_unchanged": 980,
            "planned_retry": 0,
            "planned_held": 0,
            "vanished": 1,
            "to_push": 5,
            "created": 3,
            "updated": 1,
            "rejected": 1,
            "failed": 0,
        },
        "timings": {"read": 4.0, "map": 2.0, "validate": 2.0, "plan": 1.0, "push": 2.0},
        "validation_reasons": {"email: '…' is not an e-mail address": 4, "first_name: missing": 1},
        "api_reasons": {"headline longer than 140 characters": 1},
        "examples": [
            {
                "data_type": "visitor",
                "registration_id": "V1",
                "field": "job_title",
                "old": "CEO | Founder",
                "new": "Founder",
            }
        ],
        "vanished": [{"data_type": "visitor", "registration_id": "V9", "last_seen_run_id": 6}],
        "client": {"requests": 6, "retries": 1, "throttled": 0},
    }
    values.update(overrides)
    return RunReport(**values)


def test_markdown_summary_shows_counts_reasons_timings_and_examples() -> None:
    text = render_markdown(_report())
    assert text.startswith("# Run 7 of demo: sync, partial\n")
    assert "| rows read from the source | 1,000 |" in text
    assert "| planned: unchanged (not sent) | 980 |" in text
    assert "| rejected by the Grip API | 1 |" in text
    assert "| email: '…' is not an e-mail address | 4 |" in text
    assert "| headline longer than 140 characters | 1 |" in text
    # a pipe inside a value does not break the table
    assert "| visitor | V1 | job_title | CEO \\| Founder | Founder |" in text
    assert "| push | 2.00 | 18% |" in text
    assert "Read to plan: 111 rows/s." in text
    assert "Push: 2.5 records/s." in text
    assert "visitor V9" in text
    assert "`0123456789abcdef`" in text


def test_dry_run_and_warnings_are_announced() -> None:
    text = render_markdown(
        _report(run_id=None, dry_run=True, status="planned", warnings=["a real sync is refused"])
    )
    assert text.startswith("# Dry run of demo: sync, planned\n")
    assert "> Dry run: nothing was sent and the ledger was not changed." in text
    assert "> **Warning:** a real sync is refused" in text


def test_files_hold_the_same_report_and_every_problem(tmp_path) -> None:
    problems = [
        Problem("visitor", "V2", 4, "validation", "invalid", "email: 'x' is not an e-mail address"),
        Problem("visitor", None, 9, "source", "invalid", "a.csv:9: 3 fields, expected 5"),
        Problem("visitor", "V3", 5, "api", "rejected", "headline longer than 140", status=422),
    ]
    files = write_report(_report(), problems, tmp_path / "r")
    data = read_report(files.folder)
    assert data["counts"]["read"] == 1000
    assert data["elapsed_seconds"] == 90.0
    assert data["push_rate"] == 2.5
    assert data["report_dir"] == str(tmp_path / "r")
    assert files.markdown.read_text(encoding="utf-8") == render_markdown(_report())
    with files.problems.open(encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    assert tuple(rows[0]) == CSV_COLUMNS
    assert rows[1:] == [
        ["visitor", "V2", "4", "validation", "invalid", "", "email: 'x' is not an e-mail address"],
        ["visitor", "", "9", "source", "invalid", "", "a.csv:9: 3 fields, expected 5"],
        ["visitor", "V3", "5", "api", "rejected", "422", "headline longer than 140"],
    ]


def test_sample_report_is_the_review_page(tmp_path) -> None:
    payload = {
        "registration_id": "V1",
        "name": "Иван Петров",
        "metadata_raw": {"k": [{"ru-ru": "да"}]},
    }
    sample = SampleSection(
        payloads=[payload],
        coverage={
            "records": 1,
            "data_types": ["visitor"],
            "languages": ["en-gb", "ru-ru"],
            "often_empty_fields": {"visitor": ["summary"]},
            "not_shown": [],
        },
        read_back=ReadBackSummary(
            checked=1,
            differences=[
                {"registration_id": "V1", "field": "name", "sent": "Иван", "stored": "Ivan"}
            ],
        ),
    )
    report = _report(stage="sample", status="succeeded", sample=sample)
    page = approval_markdown(report)
    assert "## Sample" in page
    assert "languages en-gb, ru-ru" in page
    assert "Fields that are often empty, shown filled: visitor: summary." in page
    assert "| V1 | name | Иван | Ivan |" in page
    assert '"name": "Иван Петров"' in page
    assert "## Time per step" not in page
    assert "## Time per step" in render_markdown(report)
    data = json.loads(json.dumps(report.to_dict()))
    assert data["sample"]["read_back"]["differences"][0]["stored"] == "Ivan"


def test_clean_read_back_says_so() -> None:
    sample = SampleSection(payloads=[], read_back=ReadBackSummary(checked=3))
    assert "All 3 accepted records read back exactly as sent." in render_markdown(
        _report(stage="sample", sample=sample)
    )
