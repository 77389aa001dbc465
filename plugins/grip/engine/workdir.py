"""The run's work folder: Parquet files of the records a run will push, chunk by chunk."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

WORK_DIR_ENV = "GRIP_WORK_DIR"
REPORT_DIR_ENV = "GRIP_REPORT_DIR"

CHUNK_SCHEMA = pa.schema(
    [
        ("data_type", pa.string()),
        ("registration_id", pa.string()),
        ("source_row", pa.int64()),
        ("source_hash", pa.int64()),
        ("content_hash", pa.string()),
        ("action", pa.string()),
        ("payload_json", pa.string()),
    ]
)
"""Columns of every chunk file: the record's key, where it came from, what the plan decided."""


@dataclass(frozen=True)
class ChunkFile:
    """One Parquet file of records to push."""

    chunk_no: int
    path: Path
    rows: int


def default_work_root() -> Path:
    """``GRIP_WORK_DIR`` if set, else ``var/work`` in the current folder."""
    return Path(os.environ.get(WORK_DIR_ENV) or Path("var") / "work").resolve()


def default_report_root() -> Path:
    """``GRIP_REPORT_DIR`` if set, else ``var/reports`` in the current folder."""
    return Path(os.environ.get(REPORT_DIR_ENV) or Path("var") / "reports").resolve()


def run_folder_name(run_id: int | None, stage: str) -> str:
    """``run-000042-sync`` for a run in the ledger, ``dry-run-<UTC time>-sync`` for a dry run."""
    if run_id is None:
        return f"dry-run-{datetime.now(UTC).strftime('%Y%m%dT%H%M%S%fZ')}-{stage}"
    return f"run-{run_id:06d}-{stage}"


class ChunkWriter:
    """Collects frames of records and writes them as Parquet files of ``chunk_size`` rows.

    Args:
        folder: where the files go (created if missing).
        prefix: file name prefix, ``chunk`` gives ``chunk-0000.parquet``.
        chunk_size: rows per file (the last file may hold fewer).
    """

    def __init__(self, folder: Path, prefix: str, chunk_size: int):
        self.folder = folder
        self.prefix = prefix
        self.chunk_size = max(1, chunk_size)
        self.files: list[ChunkFile] = []
        self._pending: list[pa.Table] = []
        self._rows = 0
        folder.mkdir(parents=True, exist_ok=True)

    def add(self, frame: pd.DataFrame) -> None:
        """Queue records (columns of :data:`CHUNK_SCHEMA`); full chunks are written at once."""
        if frame.empty:
            return
        table = pa.Table.from_pandas(
            frame[list(CHUNK_SCHEMA.names)].reset_index(drop=True),
            schema=CHUNK_SCHEMA,
            preserve_index=False,
        )
        self._pending.append(table)
        self._rows += table.num_rows
        while self._rows >= self.chunk_size:
            self._write(self.chunk_size)

    def close(self) -> list[ChunkFile]:
        """Write what is left and return every file written, in order."""
        if self._rows:
            self._write(self._rows)
        return self.files

    def _write(self, rows: int) -> None:
        table = pa.concat_tables(self._pending)
        head, rest = table.slice(0, rows), table.slice(rows)
        path = self.folder / f"{self.prefix}-{len(self.files):04d}.parquet"
        pq.write_table(head, path, compression="zstd")
        self.files.append(ChunkFile(len(self.files), path, head.num_rows))
        self._pending = [rest] if rest.num_rows else []
        self._rows = rest.num_rows


def read_chunk(path: Path | str) -> pd.DataFrame:
    """Read one chunk file into a frame with plain Python strings."""
    table = pq.read_table(path, schema=CHUNK_SCHEMA)
    return table.to_pandas(types_mapper={pa.string(): pd.StringDtype("python")}.get)


def iter_chunks(files: list[ChunkFile]) -> Iterator[pd.DataFrame]:
    """Read chunk files one after the other."""
    for item in files:
        yield read_chunk(item.path)


def drop_keys(files: list[ChunkFile], registration_ids: set[str]) -> list[ChunkFile]:
    """Remove records by registration_id from chunk files, rewriting only files that held some.

    Returns the files with their new row counts; emptied files are deleted and left out, and
    the rest are numbered again from 0.
    """
    kept: list[ChunkFile] = []
    for item in files:
        table = pq.read_table(item.path, schema=CHUNK_SCHEMA)
        ids = table.column("registration_id").to_pylist()
        mask = pa.array([rid not in registration_ids for rid in ids])
        if all(mask.to_pylist()):
            kept.append(item)
            continue
        filtered = table.filter(mask)
        if filtered.num_rows:
            pq.write_table(filtered, item.path, compression="zstd")
            kept.append(ChunkFile(item.chunk_no, item.path, filtered.num_rows))
        else:
            item.path.unlink()
    return [ChunkFile(no, f.path, f.rows) for no, f in enumerate(kept)]
