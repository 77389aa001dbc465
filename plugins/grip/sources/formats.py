"""File formats of partner exports: CSV, XLSX, JSON arrays and NDJSON, plain, gzip or zip."""

from __future__ import annotations

import codecs
import csv
import gzip
import io
import json
import logging
import zipfile
import zlib
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO, TYPE_CHECKING, Any, Literal

from grip.errors import SourceError
from grip.sources.base import (
    ROW_INDEX_NAME,
    SOURCE_FILE_ATTR,
    SourceReject,
    check_required_columns,
)

if TYPE_CHECKING:
    import pandas as pd

logger = logging.getLogger(__name__)

Format = Literal["csv", "xlsx", "json", "ndjson"]

_BLOCK = 1 << 20
_HEAD = 64 * 1024
_DELIMITERS = (",", ";", "\t", "|")
_SUFFIX_FORMATS: dict[str, Format] = {
    ".csv": "csv",
    ".txt": "csv",
    ".tsv": "csv",
    ".tab": "csv",
    ".xlsx": "xlsx",
    ".xlsm": "xlsx",
    ".json": "json",
    ".ndjson": "ndjson",
    ".jsonl": "ndjson",
}
_BOMS = (
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)


@dataclass(frozen=True)
class FileSettings:
    """How to read one file; ``None`` means detect it from the file."""

    format: Format | None = None
    encoding: str | None = None
    delimiter: str | None = None
    sheet: str | None = None
    chunk_size: int = 50_000


@dataclass
class FileLayout:
    """What inspecting a file found out: where its data is and how it is written."""

    label: str
    path: Path
    format: Format
    compression: Literal["gzip", "zip"] | None = None
    member: str | None = None
    encoding: str | None = None
    delimiter: str | None = None
    json_columns: list[str] = field(default_factory=list)
    json_records: int = 0


# Inspection -------------------------------------------------------------------------------


def inspect_file(path: Path, label: str, settings: FileSettings, work_dir: Path) -> FileLayout:
    """Find a file's compression, format, encoding and delimiter, and check it is whole.

    The whole file is decompressed and decoded once, so that a broken gzip stream, a damaged
    zip archive, an empty file or text in an unexpected encoding is reported before any row
    is handed on.

    Args:
        path: The local copy of the file.
        label: The name used in messages (the file name as the partner knows it).
        settings: Forced format, encoding, delimiter and sheet; ``None`` to detect each.
        work_dir: A private folder where a compressed workbook may be unpacked.

    Raises:
        SourceError: Naming the file and what is wrong with it.
    """
    if path.stat().st_size == 0:
        raise SourceError(f"{label}: the file is empty (0 bytes); the export wrote nothing")
    with path.open("rb") as raw:
        magic = raw.read(4)
    layout = FileLayout(label=label, path=path, format="csv")
    inner_name = label

    if magic[:2] == b"\x1f\x8b":
        layout.compression = "gzip"
        inner_name = label[:-3] if label.lower().endswith(".gz") else label
    elif magic == b"PK\x03\x04" or label.lower().endswith((".zip", ".xlsx", ".xlsm")):
        names = _zip_names(path, label)
        if "[Content_Types].xml" in names and any(n.startswith("xl/") for n in names):
            layout.format = "xlsx"
            if settings.format not in (None, "xlsx"):
                raise SourceError(
                    f"{label}: the file is an XLSX workbook but the source says format "
                    f"{settings.format!r}; set format: xlsx or auto"
                )
            _check_sheet(layout, settings)
            return layout
        layout.compression = "zip"
        layout.member = _zip_member(names, label)
        layout.label = f"{label}:{layout.member}"
        inner_name = layout.member

    layout.format = settings.format or _format_from_name(inner_name) or "csv"
    if layout.format == "xlsx":
        # A compressed workbook: unpack it, since a workbook must be read with random access.
        unpacked = work_dir / f"{len(list(work_dir.iterdir()))}-{PurePosixPath(inner_name).name}"
        with _open_binary(layout) as source, unpacked.open("wb") as target:
            _copy_checked(layout, source, target)
        layout.path, layout.compression, layout.member = unpacked, None, None
        _check_sheet(layout, settings)
        return layout

    head = _scan_text(layout, settings)
    if settings.format is None and _format_from_name(inner_name) is None:
        layout.format = _format_from_content(head)
    if layout.format == "json" and head.lstrip()[:1] == "{":
        # A ".json" export holding one object per line is NDJSON under another name.
        layout.format = "ndjson"
    if layout.format == "csv":
        layout.delimiter = settings.delimiter or _sniff_delimiter(head, inner_name)
    else:
        layout.json_columns, layout.json_records = _scan_json_columns(layout)
    return layout


def _zip_names(path: Path, label: str) -> list[str]:
    try:
        with zipfile.ZipFile(path) as archive:
            return archive.namelist()
    except (zipfile.BadZipFile, OSError, EOFError) as err:
        kind = "XLSX workbook" if label.lower().endswith((".xlsx", ".xlsm")) else "zip archive"
        raise SourceError(
            f"{label}: not a readable {kind} ({err}); the file is truncated or damaged, "
            "ask the partner to upload it again"
        ) from err


def _zip_member(names: list[str], label: str) -> str:
    members = [
        n
        for n in names
        if not n.endswith("/")
        and not n.startswith("__MACOSX/")
        and not PurePosixPath(n).name.startswith(".")
    ]
    if len(members) != 1:
        raise SourceError(
            f"{label}: a zip archive must hold exactly one data file, it holds {len(members)}"
            + (f" ({', '.join(members[:10])})" if members else "")
        )
    return members[0]


def _format_from_name(name: str) -> Format | None:
    return _SUFFIX_FORMATS.get(PurePosixPath(name).suffix.lower())


def _format_from_content(head: str) -> Format:
    start = head.lstrip()[:1]
    if start == "[":
        return "json"
    if start == "{":
        return "ndjson"
    return "csv"


@contextmanager
def _open_binary(layout: FileLayout) -> Iterator[IO[bytes]]:
    if layout.compression == "gzip":
        with gzip.GzipFile(layout.path, "rb") as compressed:
            yield compressed  # type: ignore[misc]
    elif layout.compression == "zip":
        assert layout.member is not None
        with zipfile.ZipFile(layout.path) as archive, archive.open(layout.member) as stream:
            yield stream
    else:
        with layout.path.open("rb") as stream:
            yield stream


def _read_block(layout: FileLayout, stream: IO[bytes]) -> bytes:
    try:
        return stream.read(_BLOCK)
    except (EOFError, OSError, zlib.error, zipfile.BadZipFile) as err:
        kind = "gzip stream" if layout.compression == "gzip" else "zip member"
        raise SourceError(
            f"{layout.label}: broken {kind} ({err}); the file is truncated or damaged, ask the "
            "partner to upload it again"
        ) from err


def _copy_checked(layout: FileLayout, source: IO[bytes], target: IO[bytes]) -> None:
    while block := _read_block(layout, source):
        target.write(block)


def _scan_text(layout: FileLayout, settings: FileSettings) -> str:
    """Decode the whole file once: choose the encoding and return the first 64 KiB as text."""
    with _open_binary(layout) as stream:
        first = _read_block(layout, stream)
    bom = next((name for mark, name in _BOMS if first.startswith(mark)), None)
    if settings.encoding:
        forced = settings.encoding
        try:
            canonical = codecs.lookup(forced).name
        except LookupError as err:
            raise SourceError(
                f"{layout.label}: unknown encoding {forced!r}; use a name such as utf-8, cp1252 "
                "or latin-1"
            ) from err
        if bom == "utf-8-sig" and canonical == "utf-8":
            forced = bom  # the same encoding; only the byte order mark is left out of the text
        candidates = [forced]
    else:
        candidates = [bom] if bom else ["utf-8", "cp1252", "latin-1"]

    for position, encoding in enumerate(candidates):
        last = position == len(candidates) - 1
        head, failure = _decode_all(layout, encoding)
        if failure is None:
            if not head.strip():
                raise SourceError(
                    f"{layout.label}: the file holds no data (only blank space); the export "
                    "wrote nothing"
                )
            layout.encoding = encoding
            if encoding != "utf-8":
                logger.info("File %s is read as %s", layout.label, encoding)
            return head
        if last:
            offset, line = failure
            hint = (
                f"set encoding: to the file's real encoding (it is not {encoding})"
                if settings.encoding
                else "set encoding: to the file's encoding"
            )
            raise SourceError(
                f"{layout.label}: byte offset {offset} (line {line}) is not valid {encoding}; "
                f"{hint}"
            )
    raise AssertionError("unreachable")  # pragma: no cover


def _decode_all(layout: FileLayout, encoding: str) -> tuple[str, tuple[int, int] | None]:
    try:
        decoder = codecs.getincrementaldecoder(encoding)(errors="strict")
    except LookupError as err:
        raise SourceError(f"{layout.label}: unknown encoding {encoding!r}") from err
    head_parts: list[str] = []
    head_size = 0
    offset = 0
    lines = 1
    with _open_binary(layout) as stream:
        while True:
            block = _read_block(layout, stream)
            final = not block
            try:
                text = decoder.decode(block, final=final)
            except UnicodeDecodeError as err:
                bad = offset + max(err.start, 0)
                return "", (bad, lines + block[: max(err.start, 0)].count(b"\n"))
            if head_size < _HEAD:
                head_parts.append(text)
                head_size += len(text)
            lines += block.count(b"\n")
            offset += len(block)
            if final:
                break
    return "".join(head_parts), None


def _sniff_delimiter(head: str, name: str) -> str:
    if PurePosixPath(name).suffix.lower() in (".tsv", ".tab"):
        return "\t"
    # Leave out a last line that may have been cut at the end of the sample.
    sample = head if len(head) < _HEAD else head[: head.rfind("\n") + 1] or head
    best, best_score = ",", (False, 0.0, 0)
    for delimiter in _DELIMITERS:
        try:
            rows = [r for r in csv.reader(io.StringIO(sample), delimiter=delimiter) if r][:100]
        except csv.Error:
            continue
        if not rows or len(rows[0]) < 2:
            continue
        width = len(rows[0])
        share = sum(len(r) == width for r in rows) / len(rows)
        score = (share >= 0.9, share, width)
        if score > best_score:
            best, best_score = delimiter, score
    return best


def _scan_json_columns(layout: FileLayout) -> tuple[list[str], int]:
    """Read every record once to check the JSON; return the union of keys and the records."""
    columns: dict[str, None] = {}
    count = 0
    with _open_text(layout) as text:
        records = (
            _json_array_records(text, layout.label)
            if layout.format == "json"
            else _ndjson_records(text, layout.label, None)
        )
        for _, _, record in records:
            count += 1
            if isinstance(record, dict):
                for key in record:
                    columns.setdefault(str(key), None)
    return list(columns), count


@contextmanager
def _open_text(layout: FileLayout) -> Iterator[IO[str]]:
    with _open_binary(layout) as raw:
        text = io.TextIOWrapper(raw, encoding=layout.encoding or "utf-8", newline="")
        try:
            yield text
        finally:
            text.detach()


# Reading ----------------------------------------------------------------------------------


def read_frames(
    layout: FileLayout,
    settings: FileSettings,
    *,
    rejects: list[SourceReject],
    required_columns: Collection[str] | None = None,
    file_name: str | None = None,
) -> Iterator[pd.DataFrame]:
    """Yield the rows of an inspected file as DataFrames of at most ``chunk_size`` rows.

    CSV values stay text (``str``; an empty field is ``""``); XLSX and JSON values keep the
    types the file gives them (numbers, dates, booleans, nested lists), in ``object`` columns,
    and a missing cell or key is ``None``.

    Args:
        layout: What :func:`inspect_file` found.
        settings: The chunk size and the sheet to read.
        rejects: Lines that cannot become rows are appended here.
        required_columns: Columns the mapping needs; a file lacking one raises SourceError.
        file_name: The value of ``frame.attrs["source_file"]`` (default: the file's label).
    """
    name = file_name or layout.label
    readers: dict[str, Callable[..., Iterator[tuple[list[str], list[int], list[Any]]]]] = {
        "csv": _csv_batches,
        "xlsx": _xlsx_batches,
        "json": _json_batches,
        "ndjson": _json_batches,
    }
    for columns, index, rows in readers[layout.format](layout, settings, rejects, required_columns):
        yield _frame(columns, index, rows, layout.format, name)


def _frame(
    columns: list[str], index: list[int], rows: list[Any], fmt: str, name: str
) -> pd.DataFrame:
    import pandas as pd

    row_index = pd.Index(index, dtype="int64", name=ROW_INDEX_NAME)
    if fmt == "csv":
        frame = pd.DataFrame(rows, columns=columns, dtype="str")
        frame.index = row_index
    elif fmt == "xlsx":
        frame = pd.DataFrame(rows, columns=columns, dtype=object, index=row_index)
    else:
        data = {c: [r.get(c) for r in rows] for c in columns}
        frame = pd.DataFrame(data, columns=columns, index=row_index, dtype=object)
    frame.attrs[SOURCE_FILE_ATTR] = name
    return frame


def _header(label: str, values: list[Any]) -> list[str]:
    names = []
    for position, value in enumerate(values, start=1):
        text = "" if value is None else str(value).strip()
        names.append(text or f"column_{position}")
    seen: dict[str, int] = {}
    for text in names:
        seen[text] = seen.get(text, 0) + 1
    duplicates = [n for n, count in seen.items() if count > 1]
    if duplicates:
        raise SourceError(
            f"{label}: the header names column(s) {', '.join(repr(d) for d in duplicates)} more "
            "than once; each column needs its own name"
        )
    return names


def _csv_batches(
    layout: FileLayout,
    settings: FileSettings,
    rejects: list[SourceReject],
    required: Collection[str] | None,
) -> Iterator[tuple[list[str], list[int], list[Any]]]:
    delimiter = layout.delimiter or ","
    with _open_text(layout) as text:
        reader = csv.reader(text, delimiter=delimiter, quotechar='"', doublequote=True)
        last_line = 0
        header: list[str] | None = None
        while header is None:
            try:
                fields = next(reader)
            except StopIteration:
                raise SourceError(
                    f"{layout.label}: the file holds no header line; the first line must name "
                    "the columns"
                ) from None
            except csv.Error as err:
                raise SourceError(
                    f"{layout.label}:{reader.line_num}: the header line cannot be read ({err})"
                ) from err
            last_line = reader.line_num
            if any(f.strip() for f in fields):
                header = _header(layout.label, fields)
        check_required_columns(layout.label, header, required)
        width = len(header)
        delimiter_name = {"\t": "tab"}.get(delimiter, repr(delimiter))

        record = 0
        index: list[int] = []
        rows: list[list[str]] = []
        while True:
            start = last_line + 1
            try:
                fields = next(reader)
            except StopIteration:
                break
            except csv.Error as err:
                record += 1
                last_line = reader.line_num
                rejects.append(SourceReject(layout.label, start, f"cannot be parsed ({err})"))
                continue
            last_line = reader.line_num
            if not fields or (len(fields) == 1 and width > 1 and not fields[0].strip()):
                continue
            record += 1
            if len(fields) != width:
                rejects.append(
                    SourceReject(
                        layout.label,
                        start,
                        f"has {len(fields)} fields where the header has {width} (delimiter "
                        f"{delimiter_name}); a value holding the delimiter or a line break must "
                        'be quoted with "',
                    )
                )
                continue
            index.append(record)
            rows.append(fields)
            if len(rows) >= settings.chunk_size:
                yield header, index, rows
                index, rows = [], []
        if rows:
            yield header, index, rows


def _check_sheet(layout: FileLayout, settings: FileSettings) -> None:
    workbook = _open_workbook(layout)
    try:
        _worksheet(layout, workbook, settings.sheet)
    finally:
        workbook.close()


def _open_workbook(layout: FileLayout) -> Any:
    import openpyxl

    try:
        return openpyxl.load_workbook(layout.path, read_only=True, data_only=True)
    except (zipfile.BadZipFile, KeyError, OSError, EOFError, ValueError) as err:
        raise SourceError(
            f"{layout.label}: not a readable XLSX workbook ({err}); the file is truncated or "
            "damaged, ask the partner to upload it again"
        ) from err


def _worksheet(layout: FileLayout, workbook: Any, sheet: str | None) -> Any:
    if sheet is None:
        if not workbook.worksheets:
            raise SourceError(f"{layout.label}: the workbook has no worksheet")
        return workbook.worksheets[0]
    if sheet not in workbook.sheetnames:
        raise SourceError(
            f"{layout.label}: the workbook has no sheet {sheet!r}; its sheets are "
            f"{', '.join(repr(s) for s in workbook.sheetnames)}"
        )
    return workbook[sheet]


def _xlsx_batches(
    layout: FileLayout,
    settings: FileSettings,
    rejects: list[SourceReject],
    required: Collection[str] | None,
) -> Iterator[tuple[list[str], list[int], list[Any]]]:
    workbook = _open_workbook(layout)
    try:
        sheet = _worksheet(layout, workbook, settings.sheet)
        where = f"{layout.label} (sheet {sheet.title!r})"
        try:
            rows_iter = sheet.iter_rows(values_only=True)
            header_values: list[Any] | None = None
            for values in rows_iter:
                if any(v is not None and str(v).strip() for v in values):
                    header_values = list(values)
                    break
            if header_values is None:
                raise SourceError(f"{where}: the sheet is empty; its first row must name columns")
            while header_values and (header_values[-1] is None or not str(header_values[-1])):
                header_values.pop()
            header = _header(where, header_values)
            check_required_columns(where, header, required)
            width = len(header)

            record = 0
            overflow = 0
            index: list[int] = []
            rows: list[tuple[Any, ...]] = []
            for values in rows_iter:
                if all(v is None or (isinstance(v, str) and not v.strip()) for v in values):
                    continue
                record += 1
                row = tuple(values[:width])
                if len(row) < width:
                    row = row + (None,) * (width - len(row))
                if any(v is not None for v in values[width:]):
                    overflow += 1
                index.append(record)
                rows.append(row)
                if len(rows) >= settings.chunk_size:
                    yield header, index, rows
                    index, rows = [], []
            if rows:
                yield header, index, rows
            if overflow:
                logger.warning(
                    "%s: %d rows have values right of the last named column; those values are "
                    "not read",
                    where,
                    overflow,
                )
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError, KeyError) as err:
            raise SourceError(
                f"{where}: the workbook cannot be read ({err}); the file is truncated or damaged"
            ) from err
    finally:
        workbook.close()


def _json_batches(
    layout: FileLayout,
    settings: FileSettings,
    rejects: list[SourceReject],
    required: Collection[str] | None,
) -> Iterator[tuple[list[str], list[int], list[Any]]]:
    columns = layout.json_columns
    if layout.json_records:  # an empty array has no columns to check, and no rows to map
        check_required_columns(layout.label, columns, required)
    with _open_text(layout) as text:
        records = (
            _json_array_records(text, layout.label)
            if layout.format == "json"
            else _ndjson_records(text, layout.label, rejects)
        )
        index: list[int] = []
        rows: list[dict[str, Any]] = []
        for number, line, record in records:
            if not isinstance(record, dict):
                rejects.append(
                    SourceReject(
                        layout.label,
                        line,
                        f"record {number} is a JSON {type(record).__name__}, not an object "
                        "of named values",
                    )
                )
                continue
            index.append(number)
            rows.append(record)
            if len(rows) >= settings.chunk_size:
                yield columns, index, rows
                index, rows = [], []
        if rows:
            yield columns, index, rows


def _ndjson_records(
    text: IO[str], label: str, rejects: list[SourceReject] | None
) -> Iterator[tuple[int, int, Any]]:
    number = 0
    for line_number, line in enumerate(text, start=1):
        if not line.strip():
            continue
        number += 1
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            if rejects is not None:
                rejects.append(
                    SourceReject(
                        label,
                        line_number,
                        f"is not valid JSON ({err.msg}, column "
                        f"{err.colno}); each line must hold one JSON object",
                    )
                )
            continue
        yield number, line_number, record


def _json_array_records(text: IO[str], label: str) -> Iterator[tuple[int, int, Any]]:
    """Yield (record number, line, value) from a JSON array without loading it whole."""
    decoder = json.JSONDecoder()
    buffer = ""
    pos = 0
    counted = 0  # newlines are counted in buffer[:counted]
    line = 1  # the line of buffer[counted]
    eof = False

    def line_at(position: int) -> int:
        nonlocal counted, line
        line += buffer.count("\n", counted, position)
        counted = position
        return line

    def fill() -> bool:
        nonlocal buffer, pos, counted, eof
        if eof:
            return False
        more = text.read(_BLOCK)
        if pos:
            line_at(pos)
            buffer, pos, counted = buffer[pos:], 0, 0
        if not more:
            eof = True
            return False
        buffer += more
        return True

    def skip_space() -> str:
        nonlocal pos
        while True:
            while pos < len(buffer) and buffer[pos] in " \t\r\n\ufeff":
                pos += 1
            if pos < len(buffer):
                return buffer[pos]
            if not fill():
                return ""

    def fail(message: str) -> SourceError:
        return SourceError(f"{label}:{line_at(pos)}: not a valid JSON array of objects: {message}")

    if skip_space() != "[":
        raise fail("the file must start with '['")
    pos += 1
    number = 0
    if skip_space() == "]":
        pos += 1
    else:
        while True:
            skip_space()
            while True:
                try:
                    value, end = decoder.raw_decode(buffer, pos)
                except json.JSONDecodeError as err:
                    if fill():
                        continue
                    pos = err.pos
                    raise fail(f"{err.msg} at column {err.colno} of its line") from err
                if end == len(buffer) and fill():
                    continue  # a number cut at the end of the buffer may go on
                break
            number += 1
            yield number, line_at(pos), value
            pos = end
            following = skip_space()
            if following == "]":
                pos += 1
                break
            if following != ",":
                raise fail("expected ',' or ']' after a record" if following else "cut short")
            pos += 1
    if skip_space():
        raise fail("unexpected data after the closing ']'")
