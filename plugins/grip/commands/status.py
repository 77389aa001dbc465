"""``python -m grip status``: each integration's stage and its last runs, from the ledger."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from grip.errors import GripError


def register(subparsers: Any) -> None:
    """Add the ``status`` command."""
    parser = subparsers.add_parser(
        "status",
        help="show each integration's stage and last runs from the ledger",
        description="Show integrations' stages, approvals, record counts and recent runs.",
    )
    parser.add_argument(
        "integrations",
        type=Path,
        nargs="*",
        help="integration files; without any, every integration the ledger knows",
    )
    parser.add_argument("--runs", type=int, default=5, help="recent runs to show per integration")
    parser.add_argument("--ledger", help="ledger database URL (SQLAlchemy)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")
    parser.set_defaults(func=status_command)


def collect_status(ledger: Any, names: list[str] | None, runs: int) -> list[dict[str, Any]]:
    """The status of each integration as plain data."""
    from grip.engine.gate import describe_state

    if names is None:
        names = [state.name for state in ledger.integrations()]
    out = []
    for name in names:
        state = ledger.integration(name)
        out.append(
            {
                "integration": name,
                **describe_state(state),
                "records": ledger.record_counts(name),
                "runs": [
                    {
                        "id": run.id,
                        "stage": run.stage,
                        "status": run.status,
                        "started_at": run.started_at.isoformat(),
                        "ended_at": run.ended_at.isoformat() if run.ended_at else None,
                        "counts": run.counts,
                        "report_dir": run.report_dir,
                        "message": run.message,
                    }
                    for run in ledger.runs(name, limit=runs)
                ],
            }
        )
    return out


def status_command(args: argparse.Namespace) -> int:
    """Print the status; exit 1 if the ledger cannot be read."""
    from rich.console import Console

    from grip.config import load_integration
    from grip.sync import open_ledger

    console = Console()
    try:
        integrations = [load_integration(path) for path in args.integrations]
        first = integrations[0] if integrations else None
        with open_ledger(first, args.ledger) as ledger:
            names = [i.name for i in integrations] or None
            data = collect_status(ledger, names, args.runs)
    except GripError as err:
        Console(stderr=True).print(f"[bold red]error:[/] {err}", highlight=False)
        return 1
    if args.json:
        print(json.dumps(data, indent=2, default=str))
        return 0
    if not data:
        console.print("The ledger knows no integration yet: run a sample stage first.")
    for item in data:
        _print_integration(console, item)
    return 0


def _print_integration(console: Any, item: dict[str, Any]) -> None:
    from rich.table import Table

    decided = ""
    if item.get("decided_by"):
        decided = f", decided by {item['decided_by']} at {item['decided_at']}"
        if item.get("comment"):
            decided += f" ({item['comment']})"
    console.print(
        f"[bold]{item['integration']}[/]: stage [bold]{item['stage']}[/]{decided}",
        highlight=False,
    )
    for data_type, counts in sorted(item["records"].items()):
        parts = ", ".join(f"{n:,} {outcome}" for outcome, n in sorted(counts.items()))
        console.print(f"  {data_type}: {parts}", highlight=False)
    if not item["runs"]:
        return
    table = Table(show_edge=False)
    for column in ("run", "stage", "status", "started", "read", "pushed", "rejected", "failed"):
        table.add_column(column, justify="right" if column in {"run", "read"} else "left")
    for run in item["runs"]:
        c = run["counts"]
        table.add_row(
            str(run["id"]),
            run["stage"],
            run["status"],
            run["started_at"][:19].replace("T", " "),
            f"{c['read']:,}",
            f"{c['created'] + c['updated']:,}",
            f"{c['rejected'] + c['invalid']:,}",
            f"{c['failed']:,}",
        )
    console.print(table)
