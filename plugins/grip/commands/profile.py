"""``python -m grip profile``: the columns of a sample export, to help write a mapping."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from grip.commands._common import console, file_source, read_rows

_EXAMPLE_WIDTH = 40


def register(subparsers: Any) -> None:
    """Add the ``profile`` command."""
    parser = subparsers.add_parser(
        "profile",
        help="show the columns of a sample export: fill rates, distinct values, examples",
        description=(
            "Read a sample export (CSV, XLSX, JSON or NDJSON) and show, for each column, how "
            "many rows fill it, how many distinct values it has, its longest value and its "
            "most common values, to help write a mapping."
        ),
    )
    parser.add_argument("file", type=Path, help="the sample export")
    parser.add_argument(
        "-n", "--rows", type=int, default=10_000, help="rows to read (default 10,000; 0: all)"
    )
    parser.add_argument("--examples", type=int, default=3, help="example values per column")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.set_defaults(func=profile_command)


def profile_columns(frame: Any, examples: int = 3) -> list[dict[str, Any]]:
    """Describe each column of a frame: fill rate, distinct count, longest value, examples.

    A value counts as filled when it is not null and not blank; values are compared as text
    with surrounding spaces removed.
    """
    rows = len(frame)
    described = []
    for column in frame.columns:
        text = frame[column].map(str, na_action="ignore").astype("str").str.strip()
        text = text.where(text != "")
        filled = int(text.notna().sum())
        counts = text.value_counts(dropna=True)
        described.append(
            {
                "column": str(column),
                "filled": filled,
                "fill_rate": round(filled / rows, 4) if rows else 0.0,
                "distinct": int(len(counts)),
                "unique": bool(rows and filled == rows and len(counts) == rows),
                "max_length": int(text.str.len().max()) if filled else 0,
                "examples": [str(value) for value in counts.index[:examples]],
            }
        )
    return described


def profile_command(args: argparse.Namespace) -> int:
    """Print the profile of the sample's columns."""
    frame, described = read_rows(
        file_source(args.file), base_dir=Path.cwd(), limit=args.rows or None
    )
    columns = profile_columns(frame, args.examples)
    if args.json:
        document = {"source": described, "rows": len(frame), "columns": columns}
        print(json.dumps(document, ensure_ascii=False, indent=2))
        return 0

    from rich.table import Table

    table = Table(title=f"{described}: {len(frame):,} rows")
    for name, justify in (("column", "left"), ("filled", "right"), ("distinct", "right"),
                          ("longest", "right"), ("examples", "left")):  # fmt: skip
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for item in columns:
        examples = ", ".join(_short(value) for value in item["examples"])
        name = item["column"] + (" (unique)" if item["unique"] else "")
        table.add_row(
            name,
            f"{item['fill_rate']:.0%}",
            f"{item['distinct']:,}",
            str(item["max_length"]),
            examples,
        )
    console().print(table)
    return 0


def _short(value: str) -> str:
    flat = " ".join(value.split())
    return flat if len(flat) <= _EXAMPLE_WIDTH else flat[: _EXAMPLE_WIDTH - 1] + "…"
