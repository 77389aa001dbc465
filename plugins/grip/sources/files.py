"""File drops: choose the files to read in a folder, then read them; local folders here."""

from __future__ import annotations

import fnmatch
import hashlib
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from grip.errors import SourceError
from grip.sources.base import Source, SourceFile, processed_matcher
from grip.sources.formats import FileLayout, FileSettings, inspect_file, read_frames

if TYPE_CHECKING:
    import pandas as pd

    from grip.sources.config import FileSourceConfig, SftpSourceConfig

logger = logging.getLogger(__name__)

_HASH_BLOCK = 1 << 20


@dataclass(frozen=True)
class Listed:
    """A file seen in a folder listing."""

    name: str
    path: str
    size: int
    mtime: float

    @property
    def looks(self) -> tuple[int, float]:
        return self.size, self.mtime

    def as_source_file(self, sha256: str = "") -> SourceFile:
        return SourceFile(self.name, self.size, datetime.fromtimestamp(self.mtime, UTC), sha256)


class DropSource(Source):
    """Files matching a pattern in a folder: the newest one, or every one not processed yet.

    Subclasses say how to list, fetch, look at and move files; this class chooses which
    files to read, leaves files still being written for the next run and reads the rest.
    """

    def __init__(
        self,
        *,
        folder: str,
        pattern: str,
        select: Literal["newest", "unprocessed"],
        settings: FileSettings,
        archive_folder: str | None,
        settle_seconds: float,
        processed: Collection[SourceFile] | Collection[str] = (),
        required_columns: Collection[str] | None = None,
        temp_dir: str | None = None,
    ) -> None:
        super().__init__()
        self.temp_dir = temp_dir
        self.folder = folder
        self.pattern = pattern
        self.select = select
        self.settings = settings
        self.archive_folder = archive_folder
        self.settle_seconds = settle_seconds
        self.required_columns = list(required_columns) if required_columns else None
        self._seen = processed_matcher(processed)
        self._read: list[Listed] = []
        self._work_dir: Path | None = None
        self.left_for_next_run: list[str] = []

    # What subclasses provide ---------------------------------------------------------------

    def _list(self) -> list[Listed]:
        raise NotImplementedError

    def _fetch(self, entry: Listed, work_dir: Path) -> tuple[Path, str]:
        """Make a local copy (or use the file in place); return its path and sha256."""
        raise NotImplementedError

    def _stat(self, entry: Listed) -> tuple[int, float] | None:
        """The file's size and modification time now, or None if it is gone."""
        raise NotImplementedError

    def _move(self, entry: Listed, folder: str) -> str:
        raise NotImplementedError

    # The shared part -----------------------------------------------------------------------

    def _open(self) -> None:
        if self.temp_dir:
            Path(self.temp_dir).mkdir(parents=True, exist_ok=True)
        self._work_dir = Path(tempfile.mkdtemp(prefix="grip-source-", dir=self.temp_dir))

    def _close(self) -> None:
        if self._work_dir is not None:
            shutil.rmtree(self._work_dir, ignore_errors=True)
            self._work_dir = None

    def _matching(self) -> dict[str, Listed]:
        pattern = self.pattern.lower()
        return {
            e.name: e
            for e in self._list()
            if not e.name.startswith(".") and fnmatch.fnmatchcase(e.name.lower(), pattern)
        }

    def choose(self) -> list[Listed]:
        """List the folder (twice, ``settle_seconds`` apart) and return the files to read."""
        first = self._matching()
        if self.settle_seconds > 0 and first:
            time.sleep(self.settle_seconds)
            second = self._matching()
        else:
            second = first
        stable = {
            name: entry
            for name, entry in second.items()
            if name in first and first[name].looks == entry.looks
        }
        self.left_for_next_run = sorted((set(first) | set(second)) - set(stable))
        for name in self.left_for_next_run:
            logger.info(
                "%s: %s is still being written (its size or time changed); left for the next run",
                self.describe(),
                name,
            )
        ordered = sorted(stable.values(), key=lambda e: (e.mtime, e.name))
        if not ordered:
            logger.info("%s: no file matches %r", self.describe(), self.pattern)
            return []
        if self.select == "newest":
            newest = ordered[-1]
            if self._seen(newest.as_source_file()):
                logger.info(
                    "%s: the newest file %s was processed already; nothing new to read",
                    self.describe(),
                    newest.name,
                )
                return []
            return [newest]
        chosen = [e for e in ordered if not self._seen(e.as_source_file())]
        logger.info(
            "%s: %d of %d matching files not processed yet",
            self.describe(),
            len(chosen),
            len(ordered),
        )
        return chosen

    def _chunks(self) -> Iterator[pd.DataFrame]:
        assert self._work_dir is not None
        self._read = []
        prepared: list[tuple[Listed, SourceFile, FileLayout]] = []
        for entry in self.choose():
            local, digest = self._fetch(entry, self._work_dir)
            if self._stat(entry) != entry.looks:
                # It changed while it was fetched: a slow upload that paused between looks.
                logger.info(
                    "%s: %s changed while it was read; left for the next run",
                    self.describe(),
                    entry.name,
                )
                self.left_for_next_run.append(entry.name)
                continue
            logger.info(
                "%s: fetched %s (%d bytes, sha256 %s)",
                self.describe(),
                entry.name,
                entry.size,
                digest[:12],
            )
            layout = inspect_file(local, entry.name, self.settings, self._work_dir)
            prepared.append((entry, entry.as_source_file(digest), layout))

        for entry, record, layout in prepared:
            yield from read_frames(
                layout,
                self.settings,
                rejects=self.rejects,
                required_columns=self.required_columns,
                file_name=entry.name,
            )
            self.files.append(record)
            self._read.append(entry)

    def archive_files(self, names: Collection[str]) -> list[str]:
        """Move the named files of the folder to ``archive_folder``, after the run that read them.

        The engine calls this once a run's files count as processed in the ledger, with a new
        source: the one that read them is long closed by then. A name no longer in the folder
        is left alone (moved by hand, or archived by an earlier attempt).
        """
        if not self.archive_folder or not names:
            return []
        self.open()
        present = self._matching()
        moved = []
        for name in sorted(names):
            entry = present.get(name)
            if entry is None:
                logger.info("%s: %s is no longer there; nothing to archive", self.describe(), name)
                continue
            target = self._move(entry, self.archive_folder)
            logger.info("%s: archived %s to %s", self.describe(), name, target)
            moved.append(target)
        return moved

    def archive(self) -> list[str]:
        """Move every file read to ``archive_folder``; a name taken there gets a time suffix."""
        if not self.archive_folder or not self._read:
            return []
        moved = []
        for entry in self._read:
            target = self._move(entry, self.archive_folder)
            logger.info("%s: archived %s to %s", self.describe(), entry.name, target)
            moved.append(target)
        self._read = []
        return moved


def archive_name(name: str, taken: Collection[str]) -> str:
    """The name a file gets in the archive: its own, or with a UTC time stamp if taken."""
    if name not in taken:
        return name
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    stem, dot, suffix = name.partition(".")
    return f"{stem}.{stamp}{dot}{suffix}"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while block := stream.read(_HASH_BLOCK):
            digest.update(block)
    return digest.hexdigest()


class FileSource(DropSource):
    """A local file, or the matching files of a local folder (a mounted share, the demo)."""

    kind = "file"

    def __init__(
        self,
        config: FileSourceConfig,
        *,
        base_dir: Path | None = None,
        processed: Collection[SourceFile] | Collection[str] = (),
        required_columns: Collection[str] | None = None,
    ) -> None:
        path = Path(config.path).expanduser()
        if not path.is_absolute():
            path = (base_dir or Path.cwd()) / path
        self.path = path
        # A path naming a file (an existing one, or one with a suffix) reads that file alone.
        is_file = path.is_file() or (not path.is_dir() and path.suffix != "")
        self.single_file = is_file
        archive = config.archive_folder
        folder = path.parent if is_file else path
        if archive and not Path(archive).is_absolute():
            archive = str(folder / archive)
        super().__init__(
            folder=str(folder),
            pattern=path.name if is_file else config.pattern,
            select=config.select,
            settings=file_settings(config),
            archive_folder=archive,
            settle_seconds=config.settle_seconds,
            processed=processed,
            required_columns=required_columns,
        )

    def _list(self) -> list[Listed]:
        folder = Path(self.folder)
        if self.single_file and not self.path.is_file() and not self.archive_folder:
            raise SourceError(f"{self.describe()}: the file does not exist")
        if not folder.is_dir():
            raise SourceError(f"{self.describe()}: {folder} does not exist or is not a folder")
        entries = []
        with os.scandir(folder) as listing:
            for item in listing:
                if item.is_file():
                    stat = item.stat()
                    entries.append(Listed(item.name, item.path, stat.st_size, stat.st_mtime))
        return entries

    def _fetch(self, entry: Listed, work_dir: Path) -> tuple[Path, str]:
        path = Path(entry.path)
        try:
            return path, sha256_file(path)
        except OSError as err:
            raise SourceError(f"{entry.path}: cannot read the file ({err.strerror})") from err

    def _stat(self, entry: Listed) -> tuple[int, float] | None:
        try:
            stat = os.stat(entry.path)
        except FileNotFoundError:
            return None
        return stat.st_size, stat.st_mtime

    def _move(self, entry: Listed, folder: str) -> str:
        target_dir = Path(folder)
        target_dir.mkdir(parents=True, exist_ok=True)
        taken = {p.name for p in target_dir.iterdir()}
        target = target_dir / archive_name(entry.name, taken)
        os.replace(entry.path, target)
        return str(target)

    def describe(self) -> str:
        if self.single_file:
            return f"file {self.path}"
        return f"files {self.pattern} ({self.select}) in {self.path}"


def file_settings(config: FileSourceConfig | SftpSourceConfig) -> FileSettings:
    """The reading settings shared by local and SFTP sources."""
    return FileSettings(
        format=None if config.format == "auto" else config.format,
        encoding=config.encoding,
        delimiter=config.delimiter,
        sheet=config.sheet,
        chunk_size=config.chunk_size,
    )
