"""``python -m grip run``: run a stage of an integration without Airflow."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import Any

from grip.errors import GripError, StageRefusedError

log = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_REFUSED = 2
EXIT_PARTIAL = 3


def register(subparsers: Any) -> None:
    """Add the ``run`` command."""
    parser = subparsers.add_parser(
        "run",
        help="run a stage (sample, full, sync) of an integration without Airflow",
        description=(
            "Read, map, validate and plan an integration's records, push what the stage sends, "
            "and write the run's report. The Grip token comes from GRIP_TOKEN, the base URL "
            "from --base-url or GRIP_BASE_URL; the ledger from --ledger, GRIP_LEDGER_URL, the "
            "integration file's ledger_url, or var/ledger.sqlite."
        ),
    )
    parser.add_argument("integration", type=Path, help="the integration file (YAML)")
    parser.add_argument("--stage", required=True, choices=("sample", "full", "sync"))
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="only plan: show counts and example differences, send nothing, change no state",
    )
    parser.add_argument("--sample-size", type=int, help="records in a sample (10 to 50)")
    parser.add_argument("--ledger", help="ledger database URL (SQLAlchemy)")
    parser.add_argument("--base-url", help="Grip API base URL, like https://api-prod.grip.events/1")
    parser.add_argument("--label", help="free text kept with the run in the ledger")
    parser.add_argument("--work-dir", type=Path, help="folder for the runs' work files")
    parser.add_argument("--report-dir", type=Path, help="folder for the runs' reports")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=run_command)


def client_settings(spec: Any, base_url: str | None) -> Any:
    """Grip client settings for a run outside Airflow: URL and token from the environment."""
    from grip.api import DEFAULT_BASE_URL, ClientSettings

    limits = spec.limits
    return ClientSettings(
        base_url=base_url or os.environ.get("GRIP_BASE_URL") or DEFAULT_BASE_URL,
        token=os.environ.get("GRIP_TOKEN", ""),
        concurrency=limits.concurrency,
        rate_limit=limits.rate_limit,
        adaptive=limits.adaptive_rate,
    )


def run_command(args: argparse.Namespace) -> int:
    """Run the stage; print the summary. Exit 0 when done, 3 when records were not accepted."""
    from grip.config import load_integration
    from grip.sync import open_ledger, run_stage

    console = _console()
    try:
        integration = load_integration(args.integration)
        settings = None
        if not args.dry_run:
            settings = client_settings(integration.spec, args.base_url)
        with open_ledger(integration, args.ledger) as ledger, _progress(args) as progress:
            report = run_stage(
                integration,
                args.stage,
                dry_run=args.dry_run,
                client_settings=settings,
                ledger=ledger,
                progress=progress,
                sample_size=args.sample_size,
                work_root=args.work_dir,
                report_root=args.report_dir,
                label=args.label,
            )
    except StageRefusedError as err:
        console.print(f"[bold red]refused:[/] {err}", highlight=False)
        return EXIT_REFUSED
    except GripError as err:
        console.print(f"[bold red]error:[/] {err}", highlight=False)
        return EXIT_ERROR
    print_summary(report, console)
    return EXIT_PARTIAL if report.status == "partial" else EXIT_OK


def print_summary(report: Any, console: Any) -> None:
    """Print a run's counts and where its report lies."""
    from rich.table import Table

    table = Table(title=report.title, show_header=False, title_justify="left")
    table.add_column("what")
    table.add_column("records", justify="right")
    from grip.report import COUNT_LABELS

    for key, label in COUNT_LABELS:
        if key in report.counts:
            table.add_row(label, f"{report.counts[key]:,}")
    console.print(table)
    for warning in report.warnings:
        console.print(f"[yellow]warning:[/] {warning}", highlight=False)
    if report.message:
        console.print(report.message, highlight=False)
    console.print(f"report: {report.report_dir}", highlight=False)


def _console() -> Any:
    from rich.console import Console

    return Console(stderr=True)


class _RichProgress:
    """The engine's progress as rich progress bars on stderr."""

    _LABELS = {"read": "read, map, validate, plan", "push": "push to Grip"}

    def __init__(self, enabled: bool):
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TaskProgressColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self._bar = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TaskProgressColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=_console(),
            disable=not enabled,
            transient=False,
        )
        self._tasks: dict[str, Any] = {}

    def __enter__(self) -> _RichProgress:
        self._bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._bar.stop()

    def start(self, task: str, total: int | None = None) -> None:
        self._tasks[task] = self._bar.add_task(self._LABELS.get(task, task), total=total)

    def advance(self, task: str, amount: int = 1) -> None:
        if task in self._tasks:
            self._bar.advance(self._tasks[task], amount)

    def finish(self, task: str) -> None:
        if task in self._tasks:
            done = self._bar.tasks[self._tasks[task]].completed
            self._bar.update(self._tasks[task], total=done, completed=done)


def _progress(args: argparse.Namespace) -> _RichProgress:
    return _RichProgress(enabled=not args.no_progress and sys.stderr.isatty())
