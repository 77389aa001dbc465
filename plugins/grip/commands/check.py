"""``python -m grip check``: load an integration's mappings strictly; report every problem."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from grip.commands._common import console, file_source, read_rows
from grip.errors import ConfigError

EXIT_PROBLEMS = 1


def register(subparsers: Any) -> None:
    """Add the ``check`` command."""
    parser = subparsers.add_parser(
        "check",
        help="check an integration's mappings and report every problem at once",
        description=(
            "Load the integration file and each data type's mapping strictly: unknown keys, "
            "wrong types, languages the application has not enabled, templates naming unknown "
            "fields, translation tables, type ids. With --columns, also check the columns each "
            "mapping reads against a sample export. Exits 1 when there are problems."
        ),
    )
    parser.add_argument("integration", type=Path, help="the integration file (YAML)")
    parser.add_argument(
        "--columns",
        action="append",
        default=[],
        metavar="TYPE=FILE",
        help="a sample export of a data type whose columns the mapping must find (repeatable)",
    )
    parser.add_argument(
        "--suites",
        action="store_true",
        help="also build each Great Expectations suite (checks the mappings' own expectations; "
        "imports great_expectations, which takes a few seconds)",
    )
    parser.set_defaults(func=check_command)


def check_command(args: argparse.Namespace) -> int:
    """Print each data type's state and every problem; exit 1 when there is any."""
    from grip.config import load_integration
    from grip.mapping import check_integration, check_mapping

    integration = load_integration(args.integration)
    columns = _sample_columns(args.columns, integration.spec.data_types)
    problems = [str(problem) for problem in check_integration(integration, columns)]
    out = console()
    specs = []
    for data_type in integration.spec.data_types:
        path = integration.mapping_path(data_type)
        spec, found = check_mapping(path, integration.spec.application, columns.get(data_type))
        if spec is None:
            out.print(f"[red]✗[/red] {data_type}: {path} ({len(found)} problem(s))")
            continue
        specs.append(spec)
        checked = " against the sample's columns" if data_type in columns else ""
        out.print(
            f"[green]✓[/green] {data_type}: {path} loads{checked} (type_id {spec.type_id}, "
            f"fingerprint {spec.fingerprint[:12]})"
        )
    if args.suites:
        problems.extend(_suite_problems(specs, integration))
    if problems:
        out.print(f"\n[bold red]{len(problems)} problem(s)[/bold red] in {integration.path}:")
        for problem in problems:
            out.print(f"  {problem}", markup=False, highlight=False)
        return EXIT_PROBLEMS
    out.print(f"\n[bold green]{integration.name}: no problems[/bold green]")
    return 0


def _sample_columns(items: list[str], known: dict[str, Any]) -> dict[str, list[str]]:
    columns: dict[str, list[str]] = {}
    for item in items:
        data_type, sep, file = item.partition("=")
        if not sep or not file:
            raise ConfigError(f"--columns {item!r}: write TYPE=FILE, like visitor=visitors.csv")
        if data_type not in known:
            raise ConfigError(
                f"--columns {item!r}: no data type {data_type!r}; the integration has "
                f"{', '.join(known)}"
            )
        frame, _ = read_rows(file_source(Path(file)), base_dir=Path.cwd(), limit=100)
        columns[data_type] = [str(column) for column in frame.columns]
    return columns


def _suite_problems(specs: list[Any], integration: Any) -> list[str]:
    from grip.validation import Validator

    problems = []
    for spec in specs:
        try:
            Validator(spec, integration.spec.application).build_suite()
        except ConfigError as err:
            problems.append(str(err))
    return problems
