"""``python -m grip approve`` and ``reject``: record a decision on a sample, for local use."""

from __future__ import annotations

import argparse
import getpass
from pathlib import Path
from typing import Any

from grip.errors import GripError


def register(subparsers: Any) -> None:
    """Add the ``approve`` and ``reject`` commands."""
    for name, verb in (("approve", "approve"), ("reject", "reject")):
        parser = subparsers.add_parser(
            name,
            help=f"{verb} the latest sample of an integration (in Airflow: the approval task)",
            description=(
                f"Record that the latest sample of the integration is {verb}d, with who decided "
                "and why. Approval lets full and sync runs go on with the sampled mappings."
            ),
        )
        parser.add_argument("integration", type=Path, help="the integration file (YAML)")
        parser.add_argument("--by", default=None, help="who decides (default: the login name)")
        parser.add_argument("--comment", default=None, help="the reviewer's comment")
        parser.add_argument(
            "--fingerprint",
            default=None,
            help="the mappings' fingerprint shown in the sample report (guards against "
            "deciding on a sample that is not the latest)",
        )
        parser.add_argument("--ledger", help="ledger database URL (SQLAlchemy)")
        parser.set_defaults(func=decide_command, approved=name == "approve")


def decide_command(args: argparse.Namespace) -> int:
    """Record the decision; print the integration's new stage."""
    from rich.console import Console

    from grip.config import load_integration
    from grip.sync import open_ledger, record_decision

    console = Console(stderr=True)
    try:
        integration = load_integration(args.integration)
        with open_ledger(integration, args.ledger) as ledger:
            state = record_decision(
                integration.name,
                args.approved,
                args.by or getpass.getuser(),
                args.comment,
                args.fingerprint,
                ledger=ledger,
            )
    except GripError as err:
        console.print(f"[bold red]error:[/] {err}", highlight=False)
        return 1
    console.print(
        f"{integration.name}: sample of run {state.sample_run_id} "
        f"{'approved' if args.approved else 'rejected'} by {state.decided_by}; "
        f"stage is now {state.stage.value}",
        highlight=False,
    )
    return 0
