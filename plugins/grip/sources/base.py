"""What every source hands its caller: frames in chunks, the files read, rejects, a watermark."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

from grip.errors import SourceError

if TYPE_CHECKING:
    import pandas as pd

logger = logging.getLogger(__name__)

ROW_INDEX_NAME = "row"
"""Name of the index of every frame: the 1-based number of the row in its table or file."""

SOURCE_FILE_ATTR = "source_file"
"""Key in ``frame.attrs`` holding the name of the file a frame came from (None for SQL)."""


@dataclass(frozen=True)
class SourceFile:
    """One file a source read, as the ledger remembers it.

    Attributes:
        name: The file name inside its folder (no directory part).
        size: Size in bytes of the file as stored (compressed size for ``.gz`` and ``.zip``).
        mtime: Modification time on the server or disk, in UTC.
        sha256: Hex digest of the stored bytes; empty when the file was listed but not read.
    """

    name: str
    size: int
    mtime: datetime
    sha256: str = ""

    def same_drop(self, other: SourceFile) -> bool:
        """Whether ``other`` is the same drop: same name, size and modification second."""
        return (
            self.name == other.name
            and self.size == other.size
            and int(self.mtime.timestamp()) == int(other.mtime.timestamp())
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form for the ledger: ``mtime`` as an ISO 8601 string in UTC."""
        return {
            "name": self.name,
            "size": self.size,
            "mtime": self.mtime.astimezone(UTC).isoformat(),
            "sha256": self.sha256,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SourceFile:
        """Rebuild a file record written by :meth:`to_dict`."""
        mtime = data["mtime"]
        if isinstance(mtime, str):
            mtime = datetime.fromisoformat(mtime)
        elif isinstance(mtime, int | float):
            mtime = datetime.fromtimestamp(mtime, UTC)
        if mtime.tzinfo is None:
            mtime = mtime.replace(tzinfo=UTC)
        return cls(str(data["name"]), int(data["size"]), mtime, str(data.get("sha256") or ""))


@dataclass(frozen=True)
class SourceReject:
    """A line of a file that could not be turned into a row (wrong field count, bad JSON).

    Attributes:
        file: The file name (with ``:member`` for a file inside a zip archive).
        line: The 1-based physical line where the bad record starts.
        reason: What is wrong and what a good line would look like.
    """

    file: str
    line: int
    reason: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.reason}"


def check_required_columns(
    where: str, present: Iterable[str], required: Collection[str] | None
) -> None:
    """Raise SourceError naming ``where`` when some required columns are not present."""
    if not required:
        return
    present = list(present)
    missing = [name for name in required if name not in set(present)]
    if missing:
        raise SourceError(
            f"{where}: missing column(s) {', '.join(repr(m) for m in missing)} that the mapping "
            f"needs; the columns present are {', '.join(repr(p) for p in present) or 'none'}"
        )


def processed_matcher(
    processed: Collection[SourceFile] | Collection[str],
) -> Callable[[SourceFile], bool]:
    """Build a test telling whether a listed file is one the ledger already processed.

    A plain name matches by name alone; a :class:`SourceFile` matches by name, size and
    modification second, so a drop replaced under the same name is read again.
    """
    names = {item for item in processed if isinstance(item, str)}
    files = [item for item in processed if isinstance(item, SourceFile)]
    by_name: dict[str, list[SourceFile]] = {}
    for item in files:
        by_name.setdefault(item.name, []).append(item)

    def seen(candidate: SourceFile) -> bool:
        if candidate.name in names:
            return True
        return any(old.same_drop(candidate) for old in by_name.get(candidate.name, ()))

    return seen


class Source:
    """A readable source of rows; use it as a context manager.

    ``with source: for frame in source.chunks(): ...``. Each frame's index (named ``row``) is the
    1-based number of the row in its table or file, counting data rows only (the header is not
    row 1); numbering continues across the chunks of one file and starts again for the next
    file. ``frame.attrs["source_file"]`` names the file a frame came from (None for a database);
    a frame never spans two files.

    After reading, :attr:`files` lists the files read, :attr:`rejects` the lines that could not
    become rows and :attr:`new_watermark` the largest cursor value seen by an incremental read.
    """

    kind = "source"

    def __init__(self) -> None:
        self.files: list[SourceFile] = []
        self.rejects: list[SourceReject] = []
        self.new_watermark: Any = None
        self.rows_read = 0
        self._closers: list[Callable[[], object]] = []
        self._opened = False

    # The life cycle -------------------------------------------------------------------------

    def __enter__(self) -> Self:
        self.open()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def open(self) -> None:
        """Acquire what the source needs (connections, a work folder); idempotent."""
        if not self._opened:
            self._open()
            self._opened = True

    def close(self) -> None:
        """Release connections and temporary files, then run the callbacks of :meth:`on_close`."""
        try:
            if self._opened:
                self._close()
        finally:
            self._opened = False
            closers, self._closers = self._closers, []
            for closer in reversed(closers):
                try:
                    closer()
                except Exception:
                    logger.warning("Closing %s failed", self.describe(), exc_info=True)

    def on_close(self, callback: Callable[[], object]) -> None:
        """Run ``callback`` when the source is closed (to close a client it was given)."""
        self._closers.append(callback)

    def _open(self) -> None:
        """Acquire resources; subclasses override."""

    def _close(self) -> None:
        """Release resources; subclasses override."""

    # Reading --------------------------------------------------------------------------------

    def chunks(self) -> Iterator[pd.DataFrame]:
        """Yield the rows as DataFrames of at most ``chunk_size`` rows each."""
        self.open()
        self.files = []
        self.rejects = []
        self.rows_read = 0
        started = time.monotonic()
        count = 0
        logger.info("Reading %s", self.describe())
        for frame in self._chunks():
            count += 1
            self.rows_read += len(frame)
            yield frame
        elapsed = max(time.monotonic() - started, 1e-9)
        logger.info(
            "Read %d rows in %d chunks from %s in %.1f s (%.0f rows/s), %d rejected lines",
            self.rows_read,
            count,
            self.describe(),
            elapsed,
            self.rows_read / elapsed,
            len(self.rejects),
        )

    def _chunks(self) -> Iterator[pd.DataFrame]:
        raise NotImplementedError

    def archive(self) -> list[str]:
        """Move the files read to the archive folder; return their new paths.

        Call it only after the run that used the rows succeeded. Sources without files, or
        without an archive folder, do nothing.
        """
        return []

    def archive_files(self, names: Collection[str]) -> list[str]:
        """Move the named files to the archive folder, from a source opened after the run.

        Sources without files, or without an archive folder, do nothing.
        """
        return []

    def describe(self) -> str:
        """One line, free of secrets, saying what this source reads, for logs and reports."""
        return self.kind
