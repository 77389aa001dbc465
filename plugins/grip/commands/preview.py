"""``python -m grip preview``: map the first rows of a source and show payloads and rejects."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from grip.commands._common import console, data_type_of, file_source, read_rows


def register(subparsers: Any) -> None:
    """Add the ``preview`` command."""
    parser = subparsers.add_parser(
        "preview",
        help="map the first rows of a source and print payloads and rejects",
        description=(
            "Read the first rows of a data type's source (or of a local file given with "
            "--file), map them with the data type's mapping, validate them with its Great "
            "Expectations suite and print the payloads as JSON and the rejects with their "
            "reasons. Nothing is sent and nothing is recorded."
        ),
    )
    parser.add_argument("integration", type=Path, help="the integration file (YAML)")
    parser.add_argument(
        "data_type", nargs="?", help="visitor, exhibitor, ... (optional with one data type)"
    )
    parser.add_argument("-n", "--rows", type=int, default=10, help="rows to read (default 10)")
    parser.add_argument(
        "--file", type=Path, help="read this local file (CSV, XLSX, JSON) instead of the source"
    )
    parser.add_argument("--url", help="SQLAlchemy URL for a SQL source (outside Airflow)")
    parser.add_argument(
        "--no-validate", action="store_true", help="map only (skips Great Expectations)"
    )
    parser.add_argument(
        "--json", action="store_true", help="print one JSON document instead of tables"
    )
    parser.set_defaults(func=preview_command)


def preview_command(args: argparse.Namespace) -> int:
    """Map and validate the first rows; print what Grip would receive and what is set aside."""
    from grip.config import load_integration
    from grip.mapping import Mapper, load_mapping
    from grip.validation import Validator

    integration = load_integration(args.integration)
    data_type = data_type_of(integration, args.data_type)
    if args.file is not None:
        config, base_dir = file_source(args.file), Path.cwd()
    else:
        config, base_dir = integration.spec.data_types[data_type].source, integration.folder
    frame, described = read_rows(config, base_dir=base_dir, limit=args.rows, url=args.url)
    application = integration.spec.application
    spec = load_mapping(integration.mapping_path(data_type), application, frame.columns)
    mapped = Mapper(spec).map(frame)
    if args.no_validate:
        # without validation only what the mapping itself could not do sets a row aside
        valid = mapped.select(~mapped.rows.index.isin(list(mapped.problems)))
        keys = mapped.rows["registration_id"]
        rejects = [
            {"source_row": row, "registration_id": keys.get(row), "reasons": reasons}
            for row, reasons in mapped.problems.items()
        ]
    else:
        checked = Validator(spec, application).validate(mapped)
        valid = checked.valid
        rejects = [
            {"source_row": r.source_row, "registration_id": r.registration_id, "reasons": r.reasons}
            for r in checked.rejects
        ]
    payloads = [
        {"source_row": int(row), "payload": json.loads(text)}
        for row, text in valid.rows["payload_json"].items()
    ]
    summary = {
        "integration": integration.name,
        "data_type": data_type,
        "source": described,
        "mapping": str(spec.path),
        "fingerprint": spec.fingerprint,
        "rows_read": len(frame),
        "payloads": len(payloads),
        "rejected": len(rejects),
        "filtered": mapped.filtered,
        "validated": not args.no_validate,
    }
    if args.json:
        document = {**summary, "payloads": payloads, "rejects": rejects}
        print(json.dumps(document, ensure_ascii=False, indent=2))
    else:
        _print(summary, payloads, rejects)
    return 0


def _print(summary: dict[str, Any], payloads: list[dict[str, Any]], rejects: list[Any]) -> None:
    from rich.table import Table

    out = console()
    filtered = ", ".join(f"{name} {count}" for name, count in summary["filtered"].items() if count)
    out.print(
        f"[bold]{summary['integration']} / {summary['data_type']}[/bold]: "
        f"{summary['rows_read']} rows read from {summary['source']}; "
        f"{summary['payloads']} payloads, {summary['rejected']} rejected"
        + (f", filtered: {filtered}" if filtered else "")
        + ("" if summary["validated"] else " (not validated)")
    )
    out.print(f"mapping {summary['mapping']} (fingerprint {summary['fingerprint'][:12]})")
    for item in payloads:
        out.rule(f"source row {item['source_row']}")
        out.print_json(json.dumps(item["payload"], ensure_ascii=False))
    if rejects:
        table = Table(title="Rejects", show_lines=True)
        table.add_column("row", justify="right")
        table.add_column("registration_id")
        table.add_column("reasons")
        for reject in rejects:
            table.add_row(
                str(reject["source_row"]),
                reject["registration_id"] or "",
                "\n".join(reject["reasons"]),
            )
        out.print(table)
