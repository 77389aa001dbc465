"""The demo partner's data: a registration database and a CSV drop, the same on every run."""

from __future__ import annotations

import argparse
import os
import sqlite3
import sys
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a file: make bench/ importable
    sys.path.insert(0, str(ROOT))

from bench.datagen import COMPANIES, exhibitors, representatives, visitors  # noqa: E402

DROP_DATE = "2026-03-02"
"""The date in the names of the drop's files (fixed, so that the files are the same each time)."""

SIZES = {"visitor": 300, "exhibitor": 60, "representative": 150}
SEEDS = {"visitor": 2026, "exhibitor": 2027, "representative": 2028}
LONG_JOB_TITLE = "Senior Vice President of Strategic Partnerships, " * 3

SQLITE_TYPES = {
    "reg_id": "TEXT NOT NULL UNIQUE",
    "is_test": "INTEGER NOT NULL DEFAULT 0",
    "registered_on": "DATE",
    "updated_at": "TIMESTAMP NOT NULL",
}
POSTGRES_TYPES = {
    "reg_id": "text NOT NULL UNIQUE",
    "is_test": "boolean NOT NULL DEFAULT false",
    "registered_on": "date",
    "updated_at": "timestamp NOT NULL",
}


@dataclass(frozen=True)
class DemoData:
    """The demo partner's rows of each data type, and which of them are not meant to arrive.

    Attributes:
        frames: ``visitor``, ``exhibitor`` and ``representative`` rows, all text, in the
            columns of the demo mappings.
        bad: per data type, the 1-based rows that validation must reject, with the reason.
        skipped: per data type, the 1-based rows the mappings' filters leave out, with why.
    """

    frames: Mapping[str, pd.DataFrame]
    bad: Mapping[str, dict[int, str]] = field(default_factory=dict)
    skipped: Mapping[str, dict[int, str]] = field(default_factory=dict)

    def valid_keys(self, data_type: str) -> set[str]:
        """Registration ids that reach Grip: every row that is neither bad nor left out."""
        frame = self.frames[data_type]
        out = set(self.bad.get(data_type, {})) | set(self.skipped.get(data_type, {}))
        return {key for row, key in frame["reg_id"].items() if row not in out}

    def all_valid_keys(self) -> set[str]:
        """:meth:`valid_keys` of every data type together."""
        return set().union(*(self.valid_keys(data_type) for data_type in self.frames))


def build() -> DemoData:
    """Make the demo data (always the same rows).

    The demo integration (include/integrations/demo.yaml) reads visitors from the partner's
    database (table ``visitors``) and exhibitors and their staff from CSV files dropped in a
    folder. The rows come from the generators of bench/datagen.py, in English and Russian, clean
    except for a few bad on purpose, so that a sample report shows rejects:

    * visitors: two broken e-mail addresses, a registration id containing "admin", a job title
      that makes the headline too long, one cancelled and one test registration;
    * exhibitors: a broken e-mail address and a cancelled registration;
    * representatives: a registration id given twice (the later row is rejected), a broken
      e-mail address and a test registration.

    Validation rejects the bad rows and the mappings' filters leave out the cancelled and test
    ones; every other row is valid (:meth:`DemoData.valid_keys`).
    """
    frames = {
        "visitor": _clean(visitors(SIZES["visitor"], seed=SEEDS["visitor"], bad_share=0.0)),
        "exhibitor": _with_company(
            _clean(exhibitors(SIZES["exhibitor"], seed=SEEDS["exhibitor"], bad_share=0.0))
        ),
        "representative": _clean(
            representatives(
                SIZES["representative"],
                exhibitor_count=SIZES["exhibitor"],
                seed=SEEDS["representative"],
                bad_share=0.0,
            )
        ),
    }
    bad: dict[str, dict[int, str]] = {name: {} for name in frames}
    skipped: dict[str, dict[int, str]] = {name: {} for name in frames}

    def spoil(data_type: str, row: int, column: str, value: str, why: str) -> None:
        frames[data_type].loc[row, column] = value
        bad[data_type][row] = why

    def skip(data_type: str, row: int, column: str, value: str, why: str) -> None:
        frames[data_type].loc[row, column] = value
        skipped[data_type][row] = why

    spoil("visitor", 7, "email", "no-at-sign.example.com", "e-mail without '@'")
    spoil("visitor", 23, "email", "broken@", "e-mail without a domain")
    spoil("visitor", 41, "reg_id", "V-ADMIN-41", "registration id contains 'admin'")
    spoil("visitor", 58, "job_title", LONG_JOB_TITLE, "headline over 140 characters")
    skip("visitor", 77, "status", "cancelled", "cancelled registration")
    skip("visitor", 91, "is_test", "1", "test registration")

    spoil("exhibitor", 5, "email", "sales at example.com", "e-mail without '@'")
    skip("exhibitor", 17, "status", "Cancelled", "cancelled registration")

    reps = frames["representative"]
    spoil("representative", 30, "reg_id", str(reps.loc[12, "reg_id"]), "repeats row 12's id")
    spoil("representative", 44, "email", "ivan.petrov@", "e-mail without a domain")
    skip("representative", 66, "is_test", "yes", "test registration")
    return DemoData(frames, bad, skipped)


def _clean(frame: pd.DataFrame) -> pd.DataFrame:
    """Confirmed or pending, never a test: the only rows left out are the ones planted later."""
    frame = frame.copy()
    pending = frame.index % 17 == 0
    frame["status"] = pd.array(["pending" if p else "confirmed" for p in pending], dtype="str")
    frame["is_test"] = pd.array(["0"] * len(frame), dtype="str")
    return frame


def _with_company(frame: pd.DataFrame) -> pd.DataFrame:
    """Every exhibitor names its company (the exhibitor mapping requires it)."""
    named = [c for c in COMPANIES if c]
    missing = frame["company"].isna() | (frame["company"].str.strip() == "")
    for row in frame.index[missing]:
        frame.loc[row, "company"] = named[row % len(named)]
    return frame


# -- writers --------------------------------------------------------------------------------


@contextmanager
def _replacing(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; it replaces ``path`` when the block succeeds."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        tmp.chmod(0o644)  # the docker stack's SFTP server and Airflow read it as other users
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def _visitor_rows(frame: pd.DataFrame) -> Iterator[dict[str, object]]:
    """Visitor rows as a database holds them: ISO dates, a 0/1 test flag, NULL for empty."""
    dates = pd.to_datetime(frame["registered_on"], format="mixed", dayfirst=True).dt.date
    for row, record in frame.iterrows():
        values: dict[str, object] = {"id": int(row)}
        for column, value in record.items():
            values[str(column)] = None if pd.isna(value) else str(value)
        values["registered_on"] = dates[row].isoformat()
        values["is_test"] = 1 if values["is_test"] in ("1", "true", "yes") else 0
        yield values


def write_sqlite(frame: pd.DataFrame, path: Path) -> Path:
    """Write the visitors as table ``visitors`` of a new SQLite file ``path``."""
    rows = list(_visitor_rows(frame))
    columns = list(rows[0])
    ddl = ",\n  ".join(
        ["id INTEGER PRIMARY KEY"]
        + [f"{c} {SQLITE_TYPES.get(c, 'TEXT')}" for c in columns if c != "id"]
    )
    with _replacing(path) as tmp:
        conn = sqlite3.connect(tmp)
        try:
            conn.execute(f"CREATE TABLE visitors (\n  {ddl}\n)")
            marks = ", ".join("?" for _ in columns)
            conn.executemany(
                f"INSERT INTO visitors ({', '.join(columns)}) VALUES ({marks})",
                [tuple(r[c] for c in columns) for r in rows],
            )
            conn.commit()
        finally:
            conn.close()
    return path


def _sql_literal(value: object) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, int):
        return str(value)
    return "'" + str(value).replace("'", "''") + "'"


def postgres_seed(frame: pd.DataFrame) -> str:
    """The SQL that creates and fills the partner's ``visitors`` table in PostgreSQL."""
    rows = list(_visitor_rows(frame))
    columns = list(rows[0])
    ddl = ",\n  ".join(
        ["id integer PRIMARY KEY"]
        + [f"{c} {POSTGRES_TYPES.get(c, 'text')}" for c in columns if c != "id"]
    )
    lines = [
        "-- The demo partner's registration database: the visitors of the demo integration.",
        "-- Made by scripts/demo_data.py (python scripts/demo_data.py --postgres-seed "
        "include/demo/partner.sql); do not edit by hand.",
        "BEGIN;",
        f"CREATE TABLE visitors (\n  {ddl}\n);",
        f"INSERT INTO visitors ({', '.join(columns)}) VALUES",
    ]
    values = []
    for record in rows:
        literals = [_sql_literal(record[c]) for c in columns]
        flag = columns.index("is_test")
        literals[flag] = "true" if record["is_test"] else "false"
        values.append("(" + ", ".join(literals) + ")")
    lines.append(",\n".join(values) + ";")
    lines.append("COMMIT;")
    return "\n".join(lines) + "\n"


def write_postgres_seed(frame: pd.DataFrame, path: Path) -> Path:
    """Write :func:`postgres_seed` to ``path``."""
    with _replacing(path) as tmp:
        tmp.write_text(postgres_seed(frame), encoding="utf-8")
    return path


def write_drop(data: DemoData, folder: Path, date: str = DROP_DATE) -> list[Path]:
    """Write ``exhibitors_<date>.csv`` and ``representatives_<date>.csv`` into ``folder``."""
    written = []
    for data_type, stem in (("exhibitor", "exhibitors"), ("representative", "representatives")):
        path = folder / f"{stem}_{date}.csv"
        with _replacing(path) as tmp:
            data.frames[data_type].to_csv(tmp, index=False, encoding="utf-8")
        written.append(path)
    return written


def write_demo(folder: Path, data: DemoData | None = None) -> dict[str, Path]:
    """Write ``partner.sqlite`` and ``drop/`` into ``folder`` (usually var/demo).

    Files of other dates in ``drop/`` are left alone; the two files of :data:`DROP_DATE` are
    replaced.

    Returns:
        ``sqlite``, ``drop``, ``exhibitors`` and ``representatives`` paths.
    """
    data = data or build()
    sqlite_path = write_sqlite(data.frames["visitor"], folder / "partner.sqlite")
    exhibitor_csv, representative_csv = write_drop(data, folder / "drop")
    return {
        "sqlite": sqlite_path,
        "drop": folder / "drop",
        "exhibitors": exhibitor_csv,
        "representatives": representative_csv,
    }


def integration_copy(drop: Path, folder: Path, name: str = "demo") -> Path:
    """Write a copy of an integration file that reads its CSV drop from ``drop``.

    The repository's ``include/integrations/demo.yaml`` names the drop relative to itself
    (``var/demo/drop``); a run whose demo data lies elsewhere uses this copy, whose mapping and
    drop paths are absolute. Returns the copy's path (``folder/<name>.yaml``).
    """
    import yaml

    source = ROOT / "include" / "integrations" / f"{name}.yaml"
    spec = yaml.safe_load(source.read_text(encoding="utf-8"))
    for data_type in spec["data_types"].values():
        data_type["mapping"] = str((source.parent / data_type["mapping"]).resolve())
        if data_type["source"].get("kind") == "file":
            data_type["source"]["path"] = str(drop)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / source.name
    target.write_text(
        f"# A copy of {source.relative_to(ROOT)} that reads the drop from {drop}.\n"
        + yaml.safe_dump(spec, allow_unicode=True, sort_keys=False),
        encoding="utf-8",
    )
    return target


def main(argv: list[str] | None = None) -> int:
    """Write the demo data; ``--postgres-seed`` also writes the docker stack's seed.

        python scripts/demo_data.py                  # var/demo/partner.sqlite, var/demo/drop/
        python scripts/demo_data.py --postgres-seed include/demo/partner.sql

    The docker stack (docker-compose.yaml) seeds its partner PostgreSQL from
    include/demo/partner.sql and mounts var/demo/drop/: both are committed, and
    tests/integration/test_demo_data.py fails when they differ from what this module makes.
    Files are written under a temporary name and renamed, so a reader never sees half a file.
    """
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--out", type=Path, default=ROOT / "var" / "demo", help="folder (default var/demo)"
    )
    parser.add_argument(
        "--postgres-seed",
        type=Path,
        help="also write the visitors as a PostgreSQL seed file (include/demo/partner.sql)",
    )
    args = parser.parse_args(argv)
    data = build()
    paths = write_demo(args.out, data)
    counts = {name: len(frame) for name, frame in data.frames.items()}
    print(f"wrote {counts['visitor']} visitors to {paths['sqlite']}")
    print(f"wrote {counts['exhibitor']} exhibitors to {paths['exhibitors']}")
    print(f"wrote {counts['representative']} representatives to {paths['representatives']}")
    if args.postgres_seed:
        write_postgres_seed(data.frames["visitor"], args.postgres_seed)
        print(f"wrote {counts['visitor']} visitors to {args.postgres_seed}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
