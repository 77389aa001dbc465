"""Local file sources: every format, encoding and compression, bad lines and broken files."""

from __future__ import annotations

import datetime as dt
import gzip
import json
import os
import threading
import time
import zipfile
from pathlib import Path

import openpyxl
import pandas as pd
import pytest
from pydantic import TypeAdapter, ValidationError

from grip.errors import SourceError
from grip.sources import (
    ROW_INDEX_NAME,
    FileSourceConfig,
    SourceConfig,
    SourceFile,
    SourceReject,
    build_source,
)

CYRILLIC = "Бруно Ковальчук"


def read_all(path: Path | str, *, required=None, processed=(), **settings):
    """Read a local source completely; return (one frame of all rows, frames, source)."""
    config = FileSourceConfig(kind="file", path=str(path), **settings)
    with build_source(config, required_columns=required, processed=processed) as source:
        frames = list(source.chunks())
    whole = pd.concat(frames) if frames else pd.DataFrame()
    return whole, frames, source


def write(path: Path, data: bytes | str, encoding: str = "utf-8") -> Path:
    path.write_bytes(data if isinstance(data, bytes) else data.encode(encoding))
    return path


# CSV: encodings, delimiters, quoting -------------------------------------------------------


@pytest.mark.parametrize(
    ("encoding", "prefix", "text"),
    [
        ("utf-8", b"", f"{CYRILLIC}; 東京; Zoë"),
        ("utf-8", b"\xef\xbb\xbf", f"{CYRILLIC}; 東京; Zoë"),
        ("utf-16-le", b"\xff\xfe", f"{CYRILLIC}; Zoë"),
        ("cp1252", b"", "Zoë Müller – 5 €"),
        ("latin-1", b"", "Zoë Müller, Ærø"),
    ],
)
def test_csv_encoding_is_detected(tmp_path, encoding, prefix, text):
    body = f'id,name\n1,"{text}"\n2,plain\n'
    path = write(tmp_path / "export.csv", prefix + body.encode(encoding))

    frame, _, _ = read_all(path)

    assert list(frame.columns) == ["id", "name"]
    assert frame.loc[1, "name"] == text
    assert frame.loc[2, "name"] == "plain"


def test_latin1_bytes_undefined_in_cp1252_fall_back_to_latin1(tmp_path):
    path = write(tmp_path / "old.csv", b"id,name\n1,A\x81B\xe9\n")

    frame, _, _ = read_all(path)

    assert frame.loc[1, "name"] == "A\x81Bé"


def test_forced_encoding_wins_over_detection(tmp_path):
    # Valid UTF-8 bytes that the partner says are cp1252.
    path = write(tmp_path / "forced.csv", "id,name\n1,Zoë\n".encode())

    frame, _, _ = read_all(path, encoding="cp1252")

    assert frame.loc[1, "name"] == "ZoÃ«"


@pytest.mark.parametrize("delimiter", [",", ";", "\t", "|"])
def test_csv_delimiter_is_detected(tmp_path, delimiter):
    rows = [["id", "email", "city"], ["1", "a@example.com", "Paris"], ["2", "b@example.com", ""]]
    body = "\n".join(delimiter.join(r) for r in rows) + "\n"
    path = write(tmp_path / "people.csv", body)

    frame, _, _ = read_all(path)

    assert list(frame.columns) == ["id", "email", "city"]
    assert frame.loc[2, "email"] == "b@example.com"
    assert frame.loc[2, "city"] == ""


def test_forced_delimiter_is_used(tmp_path):
    path = write(tmp_path / "odd.csv", "a;b,c\n1;2,3\n")

    frame, _, _ = read_all(path, delimiter=",")

    assert list(frame.columns) == ["a;b", "c"]


def test_csv_quoted_fields_keep_delimiters_quotes_and_line_breaks(tmp_path):
    body = 'id,summary,company\r\n1,"Opera, music\r\nand ""sport""",Example Ltd\r\n2,"",\r\n'
    path = write(tmp_path / "quoted.csv", body)

    frame, _, _ = read_all(path)

    assert frame.loc[1, "summary"] == 'Opera, music\r\nand "sport"'
    assert frame.loc[2, "summary"] == ""
    assert frame.loc[2, "company"] == ""


def test_csv_values_stay_text_with_leading_zeros(tmp_path):
    path = write(tmp_path / "ids.csv", "registration_id,phone\n00123,+44 20 7946 0000\n")

    frame, _, _ = read_all(path)

    assert frame.loc[1, "registration_id"] == "00123"
    assert str(frame["registration_id"].dtype) == "str"


def test_csv_header_names_are_trimmed_and_blank_ones_numbered(tmp_path):
    path = write(tmp_path / "header.csv", " id , Email ,\n1,a@example.com,x\n")

    frame, _, _ = read_all(path)

    assert list(frame.columns) == ["id", "Email", "column_3"]


def test_bad_csv_line_becomes_a_reject_with_its_physical_line(tmp_path):
    body = (
        "id,name,city\n"  # line 1
        '1,"two\nlines",Paris\n'  # lines 2-3
        "2,too,many,fields\n"  # line 4: bad
        "\n"  # line 5: blank, skipped
        "3,short\n"  # line 6: bad
        "4,fine,Rome\n"  # line 7
    )
    path = write(tmp_path / "bad.csv", body)

    frame, _, source = read_all(path)

    assert list(frame.index) == [1, 4]
    assert frame.index.name == ROW_INDEX_NAME
    assert frame.loc[4, "city"] == "Rome"
    assert [(r.file, r.line) for r in source.rejects] == [("bad.csv", 4), ("bad.csv", 6)]
    assert "has 4 fields where the header has 3" in source.rejects[0].reason
    assert str(source.rejects[1]).startswith("bad.csv:6: has 2 fields")


def test_csv_field_beyond_the_size_limit_is_a_reject_and_reading_goes_on(tmp_path):
    huge = "x" * 200_000
    path = write(tmp_path / "huge.csv", f"id,note\n1,ok\n2,{huge}\n3,fine\n")

    frame, _, source = read_all(path)

    assert list(frame.index) == [1, 3]
    assert [(r.line, r.reason) for r in source.rejects] == [
        (3, "cannot be parsed (field larger than field limit (131072))")
    ]


def test_rows_are_numbered_across_chunks(tmp_path):
    body = "id\n" + "".join(f"{i}\n" for i in range(1, 26))
    path = write(tmp_path / "many.csv", body)

    _, frames, source = read_all(path, chunk_size=10)

    assert [len(f) for f in frames] == [10, 10, 5]
    assert list(pd.concat(frames).index) == list(range(1, 26))
    assert [f.loc[f.index[0], "id"] for f in frames] == ["1", "11", "21"]
    assert all(f.attrs["source_file"] == "many.csv" for f in frames)
    assert source.rows_read == 25


def test_header_only_file_gives_no_rows(tmp_path):
    path = write(tmp_path / "none.csv", "id,email\n")

    frame, frames, source = read_all(path, required=["email"])

    assert frames == []
    assert len(source.files) == 1


@pytest.mark.parametrize(
    ("name", "data", "settings", "message"),
    [
        ("empty.csv", b"", {}, r"empty\.csv: the file is empty \(0 bytes\)"),
        ("blank.csv", b"\n  \r\n", {}, r"blank\.csv: the file holds no data"),
        ("bom.csv", b"\xef\xbb\xbf", {}, r"bom\.csv: the file holds no data"),
        ("dup.csv", b"id,email,id\n1,2,3\n", {}, r"dup\.csv: the header names column\(s\) 'id'"),
        (
            "wrong.csv",
            b"id,name\n1,ok\n2,Zo\xeb\n",
            {"encoding": "utf-8"},
            r"wrong\.csv: byte offset 17 \(line 3\) is not valid utf-8; set encoding: to the "
            r"file's real encoding",
        ),
        ("enc.csv", b"a\n1\n", {"encoding": "klingon"}, r"enc\.csv: unknown encoding 'klingon'"),
        (
            "broken.csv.gz",
            gzip.compress(b"id,name\n" + b"".join(b"%d,%x\n" % (i, i * 7919) for i in range(5000)))[
                :-300
            ],
            {},
            r"broken\.csv\.gz: broken gzip stream",
        ),
        (
            "garbage.csv.gz",
            b"\x1f\x8b\x08\x00garbage that is not deflate",
            {},
            r"garbage\.csv\.gz: broken gzip stream",
        ),
        ("cut.zip", b"PK\x03\x04 truncated archive", {}, r"cut\.zip: not a readable zip archive"),
        ("cut.xlsx", None, {}, r"cut\.xlsx: not a readable XLSX workbook"),
        ("fake.xlsx", b"id,name\n1,2\n", {}, r"fake\.xlsx: not a readable XLSX workbook"),
        (
            "array.json",
            b'[{"id": 1},\n {"id": 2,,}]',
            {},
            r"array\.json:2: not a valid JSON array of objects: Expecting property name",
        ),
        ("open.json", b'[{"id": 1},\n', {}, r"open\.json:2: not a valid JSON array of objects"),
        ("tail.json", b'[{"id": 1}] x', {}, r"tail\.json:1: .*unexpected data after"),
        ("scalar.json", b'"just text"', {}, r"scalar\.json:1: .*must start with '\['"),
    ],
)
def test_broken_files_raise_an_error_naming_the_file(tmp_path, name, data, settings, message):
    if data is None:  # a workbook cut in half
        whole = tmp_path / "whole.xlsx"
        workbook = openpyxl.Workbook()
        workbook.active.append(["id", "name"])
        for i in range(2000):
            workbook.active.append([i, f"name {i}"])
        workbook.save(whole)
        data = whole.read_bytes()[: whole.stat().st_size // 2]
    path = write(tmp_path / name, data)

    with pytest.raises(SourceError, match=message):
        read_all(path, **settings)


def test_missing_required_columns_are_named_with_the_columns_present(tmp_path):
    path = write(tmp_path / "partial.csv", "id,first_name\n1,Ann\n")

    with pytest.raises(
        SourceError,
        match=r"partial\.csv: missing column\(s\) 'email', 'last_name' that the mapping needs; "
        r"the columns present are 'id', 'first_name'",
    ):
        read_all(path, required=["id", "email", "last_name"])


# Compression ---------------------------------------------------------------------------------


def test_gzip_csv_is_read_and_hashed_as_stored(tmp_path):
    raw = f"id,name\n1,{CYRILLIC}\n".encode()
    path = write(tmp_path / "export.csv.gz", gzip.compress(raw))

    frame, _, source = read_all(path)

    assert frame.loc[1, "name"] == CYRILLIC
    [record] = source.files
    assert record.name == "export.csv.gz"
    assert record.size == path.stat().st_size
    import hashlib

    assert record.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


def test_gzip_without_suffix_is_detected_by_its_magic_bytes(tmp_path):
    path = write(tmp_path / "export.dat", gzip.compress(b'[{"id": 7}]'))

    frame, _, _ = read_all(path)

    assert frame.loc[1, "id"] == 7


def test_zip_with_one_member_is_read_and_named_in_rejects(tmp_path):
    path = tmp_path / "drop.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("inner/visitors.csv", "id;name\n1;Ann\n2;Bob;extra\n")

    frame, _, source = read_all(path)

    assert list(frame["name"]) == ["Ann"]
    assert source.rejects == [
        SourceReject(
            "drop.zip:inner/visitors.csv",
            3,
            source.rejects[0].reason,
        )
    ]
    assert frame.attrs["source_file"] == "drop.zip"


def test_zip_with_several_members_is_refused(tmp_path):
    path = tmp_path / "two.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("a.csv", "id\n1\n")
        archive.writestr("b.csv", "id\n2\n")

    with pytest.raises(SourceError, match=r"two\.zip: a zip archive must hold exactly one data "):
        read_all(path)


# XLSX ----------------------------------------------------------------------------------------


def make_workbook(path: Path, sheets: dict[str, list[list[object]]]) -> Path:
    workbook = openpyxl.Workbook()
    workbook.remove(workbook.active)
    for title, rows in sheets.items():
        sheet = workbook.create_sheet(title)
        for row in rows:
            sheet.append(row)
    workbook.save(path)
    return path


def test_xlsx_first_sheet_keeps_cell_types(tmp_path):
    when = dt.datetime(2025, 3, 4, 9, 30)
    path = make_workbook(
        tmp_path / "visitors.xlsx",
        {
            "Visitors": [
                ["id", "name", "registered", "vip", None],
                [1, CYRILLIC, when, True],
                [None, None, None, None],
                [2, "Zoë", None, False],
            ],
            "Other": [["x"], [1]],
        },
    )

    frame, _, _ = read_all(path)

    assert list(frame.columns) == ["id", "name", "registered", "vip"]
    assert list(frame.index) == [1, 2]  # the empty row is not a row
    assert frame.loc[1, "id"] == 1
    assert frame.loc[1, "name"] == CYRILLIC
    assert frame.loc[1, "registered"] == when
    assert frame.loc[1, "vip"] is True
    assert frame.loc[2, "registered"] is None


def test_xlsx_named_sheet_and_missing_sheet(tmp_path):
    path = make_workbook(
        tmp_path / "book.xlsx", {"First": [["a"], [1]], "Exhibitors": [["company"], ["ACME"]]}
    )

    frame, _, _ = read_all(path, sheet="Exhibitors")
    assert list(frame["company"]) == ["ACME"]

    with pytest.raises(
        SourceError, match=r"book\.xlsx: the workbook has no sheet 'Nope'; its sheets are 'First'"
    ):
        read_all(path, sheet="Nope")


def test_xlsx_empty_sheet_and_required_columns(tmp_path):
    path = make_workbook(tmp_path / "empty.xlsx", {"Blank": []})
    with pytest.raises(SourceError, match=r"empty\.xlsx \(sheet 'Blank'\): the sheet is empty"):
        read_all(path)

    path = make_workbook(tmp_path / "cols.xlsx", {"S": [["id", "name"], [1, "a"]]})
    with pytest.raises(SourceError, match=r"cols\.xlsx \(sheet 'S'\): missing column\(s\) 'email'"):
        read_all(path, required=["email"])


def test_xlsx_inside_gzip_is_unpacked_and_read(tmp_path):
    book = make_workbook(tmp_path / "book.xlsx", {"S": [["id"], [5]]})
    path = write(tmp_path / "book.xlsx.gz", gzip.compress(book.read_bytes()))

    frame, _, _ = read_all(path)

    assert frame.loc[1, "id"] == 5


def test_xlsx_chunks(tmp_path):
    path = make_workbook(tmp_path / "big.xlsx", {"S": [["id"]] + [[i] for i in range(1, 8)]})

    _, frames, _ = read_all(path, chunk_size=3)

    assert [list(f.index) for f in frames] == [[1, 2, 3], [4, 5, 6], [7]]


# JSON and NDJSON -----------------------------------------------------------------------------


def test_json_array_keeps_types_nesting_and_null(tmp_path):
    records = [
        {"id": 1, "name": CYRILLIC, "tags": ["a", "b"], "vip": True, "score": 1.5},
        {"id": 2, "name": None, "extra": {"k": "v"}},
        "not an object",
        {"id": 4, "name": ""},
    ]
    text = json.dumps(records, ensure_ascii=False, indent=2)
    path = write(tmp_path / "people.json", text)

    frame, _, source = read_all(path)

    assert list(frame.columns) == ["id", "name", "tags", "vip", "score", "extra"]
    assert list(frame.index) == [1, 2, 4]
    assert frame.loc[1, "tags"] == ["a", "b"]
    assert frame.loc[2, "name"] is None
    assert frame.loc[2, "tags"] is None  # missing key
    assert frame.loc[4, "name"] == ""
    assert frame.loc[2, "extra"] == {"k": "v"}
    assert len(source.rejects) == 1
    assert "record 3 is a JSON str" in source.rejects[0].reason
    assert source.rejects[0].line == text.splitlines().index('  "not an object",') + 1


def test_large_json_array_is_streamed_across_buffer_boundaries(tmp_path):
    records = [{"id": i, "text": "x" * (i % 300), "n": i * 1.5} for i in range(40_000)]
    path = write(tmp_path / "big.json", json.dumps(records))
    assert path.stat().st_size > 3 * (1 << 20)

    frame, frames, _ = read_all(path, chunk_size=15_000)

    assert [len(f) for f in frames] == [15_000, 15_000, 10_000]
    assert frame["id"].tolist() == list(range(40_000))
    assert frame["n"].tolist() == [i * 1.5 for i in range(40_000)]


def test_empty_json_array_gives_no_rows(tmp_path):
    _, frames, _ = read_all(write(tmp_path / "none.json", "[ ]"), required=["email"])
    assert frames == []


def test_json_required_columns_use_every_key_in_the_file(tmp_path):
    path = write(tmp_path / "keys.json", '[{"id": 1}, {"id": 2, "email": "b@example.com"}]')

    frame, _, _ = read_all(path, required=["email"])
    assert frame.loc[2, "email"] == "b@example.com"

    with pytest.raises(SourceError, match=r"keys\.json: missing column\(s\) 'name'"):
        read_all(path, required=["name"])


def test_ndjson_bad_lines_become_rejects(tmp_path):
    body = '{"id": 1}\n\n{"id": 2, "name": "Zoë"\n[1, 2]\n{"id": 4, "name": "Ann"}\n'
    path = write(tmp_path / "feed.ndjson", body)

    frame, _, source = read_all(path)

    assert list(frame.index) == [1, 4]
    assert frame.loc[4, "name"] == "Ann"
    assert [(r.line, r.reason.split(" (")[0]) for r in source.rejects] == [
        (3, "is not valid JSON"),
        (4, "record 3 is a JSON list, not an object of named values"),
    ]


def test_json_file_with_one_object_per_line_is_read_as_ndjson(tmp_path):
    path = write(tmp_path / "lines.json", '{"id": 1}\n{"id": 2}\n')

    frame, _, _ = read_all(path)

    assert frame["id"].tolist() == [1, 2]


def test_format_can_be_forced(tmp_path):
    path = write(tmp_path / "export.txt", '{"id": 1}\n')

    frame, _, _ = read_all(path, format="ndjson")

    assert frame["id"].tolist() == [1]


# Folders: selection, files still being written, archive ------------------------------------


def drop(folder: Path, name: str, body: str, mtime: float) -> Path:
    path = write(folder / name, body)
    os.utime(path, (mtime, mtime))
    return path


def test_newest_matching_file_is_chosen(tmp_path):
    base = time.time() - 1000
    drop(tmp_path, "visitors_1.csv", "id\n1\n", base)
    drop(tmp_path, "visitors_3.csv", "id\n3\n", base + 20)
    drop(tmp_path, "visitors_2.csv", "id\n2\n", base + 10)
    drop(tmp_path, "exhibitors.csv", "id\n9\n", base + 30)
    drop(tmp_path, ".visitors_4.csv", "id\n4\n", base + 40)

    frame, _, source = read_all(tmp_path, pattern="visitors_*.CSV")

    assert frame["id"].tolist() == ["3"]
    assert [f.name for f in source.files] == ["visitors_3.csv"]


def test_newest_file_already_processed_gives_nothing(tmp_path):
    base = time.time() - 1000
    drop(tmp_path, "a.csv", "id\n1\n", base)
    drop(tmp_path, "b.csv", "id\n2\n", base + 10)

    _, frames, source = read_all(tmp_path, processed={"b.csv"})

    assert frames == []
    assert source.files == []


def test_unprocessed_files_are_read_in_time_order_each_numbered_from_one(tmp_path):
    base = time.time() - 1000
    drop(tmp_path, "b.csv", "id\nb1\nb2\n", base + 10)
    drop(tmp_path, "a.csv", "id\na1\n", base + 10)
    drop(tmp_path, "c.csv", "id\nc1\n", base)
    old = drop(tmp_path, "old.csv", "id\nold\n", base - 100)
    _, _, first = read_all(tmp_path, pattern="old.csv")
    processed = first.files

    _, frames, source = read_all(tmp_path, select="unprocessed", processed=processed)

    assert [(f.attrs["source_file"], f["id"].tolist(), list(f.index)) for f in frames] == [
        ("c.csv", ["c1"], [1]),
        ("a.csv", ["a1"], [1]),
        ("b.csv", ["b1", "b2"], [1, 2]),
    ]
    assert [f.name for f in source.files] == ["c.csv", "a.csv", "b.csv"]

    # The same name with another size is a new drop, read again.
    old.write_text("id\nold\nnewer\n")
    _, frames, _ = read_all(tmp_path, select="unprocessed", processed=processed + source.files)
    assert [f.attrs["source_file"] for f in frames] == ["old.csv"]


def test_file_still_being_written_is_left_for_the_next_run(tmp_path):
    drop(tmp_path, "done.csv", "id\n1\n", time.time() - 100)
    growing = tmp_path / "growing.csv"
    growing.write_text("id\n")
    stop = threading.Event()

    def append() -> None:
        count = 0
        while not stop.is_set():
            count += 1
            with growing.open("a") as out:
                out.write(f"{count}\n")
            time.sleep(0.05)

    writer = threading.Thread(target=append)
    writer.start()
    try:
        config = FileSourceConfig(
            kind="file", path=str(tmp_path), select="unprocessed", settle_seconds=0.4
        )
        with build_source(config) as source:
            frames = list(source.chunks())
    finally:
        stop.set()
        writer.join()

    assert [f.attrs["source_file"] for f in frames] == ["done.csv"]
    assert source.left_for_next_run == ["growing.csv"]


def test_archive_moves_the_files_read_and_keeps_names_unique(tmp_path):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "archive").mkdir()
    (inbox / "archive" / "a.csv").write_text("older copy\n")
    drop(inbox, "a.csv", "id\n1\n", time.time() - 50)
    drop(inbox, "b.csv", "id\n2\n", time.time() - 40)
    config = FileSourceConfig(
        kind="file", path=str(inbox), select="unprocessed", archive_folder="archive"
    )

    with build_source(config) as source:
        list(source.chunks())
        moved = source.archive()

    assert sorted(p.name for p in inbox.iterdir()) == ["archive"]
    names = {p.name for p in (inbox / "archive").iterdir()}
    [renamed] = names - {"a.csv", "b.csv"}
    assert len(names) == 3
    assert renamed.startswith("a.")
    assert renamed.endswith(".csv")
    assert (inbox / "archive" / renamed).read_text() == "id\n1\n"
    assert (inbox / "archive" / "a.csv").read_text() == "older copy\n"
    assert len(moved) == 2


def test_single_file_path_relative_to_base_dir(tmp_path):
    (tmp_path / "data").mkdir()
    write(tmp_path / "data" / "demo.csv", "id\n1\n")
    config = FileSourceConfig(kind="file", path="data/demo.csv")

    with build_source(config, base_dir=tmp_path) as source:
        frames = list(source.chunks())

    assert frames[0]["id"].tolist() == ["1"]
    assert source.describe() == f"file {tmp_path / 'data' / 'demo.csv'}"


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("missing.csv", r"file .*missing\.csv: the file does not exist"),
        ("no-such-folder", r"no-such-folder does not exist or is not a folder"),
    ],
)
def test_missing_local_path_is_an_error(tmp_path, path, message):
    with pytest.raises(SourceError, match=message):
        read_all(tmp_path / path)


# Records and settings ------------------------------------------------------------------------


def test_source_file_round_trips_through_its_dict():
    record = SourceFile("a.csv", 12, dt.datetime(2025, 1, 2, 3, 4, 5, tzinfo=dt.UTC), "ab" * 32)

    again = SourceFile.from_dict(json.loads(json.dumps(record.to_dict())))

    assert again == record
    assert again.same_drop(record)
    later = SourceFile("a.csv", 12, dt.datetime(2025, 1, 2, 3, 4, 6, tzinfo=dt.UTC))
    assert not later.same_drop(record)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"kind": "sql", "table": "t"}, "give exactly one of conn_id"),
        ({"kind": "sql", "conn_id": "c", "url": "sqlite://", "table": "t"}, "exactly one"),
        ({"kind": "sql", "conn_id": "c"}, "give exactly one of table and query"),
        ({"kind": "sql", "conn_id": "c", "table": "t; drop"}, "is not a plain name"),
        ({"kind": "sftp", "folder": "/in"}, "give exactly one of conn_id"),
        ({"kind": "sftp", "host": "h", "folder": "/in"}, "give username with host"),
        ({"kind": "file", "path": "a.csv", "delimiter": ",,"}, "at most 1 character"),
        ({"kind": "file", "path": "a.csv", "format": "xls"}, "Input should be 'auto'"),
        ({"kind": "file", "path": "a.csv", "colour": "red"}, "Extra inputs are not permitted"),
    ],
)
def test_source_settings_are_checked(data, message):
    with pytest.raises(ValidationError, match=message):
        TypeAdapter(SourceConfig).validate_python(data)


def test_archive_files_moves_the_named_files_from_a_new_source(tmp_path):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    drop(inbox, "a.csv", "id\n1\n", time.time() - 50)
    drop(inbox, "b.csv", "id\n2\n", time.time() - 40)
    config = FileSourceConfig(
        kind="file", path=str(inbox), select="unprocessed", archive_folder="archive"
    )

    with build_source(config) as source:
        moved = source.archive_files(["a.csv", "gone.csv"])

    assert [Path(p).name for p in moved] == ["a.csv"]
    assert sorted(p.name for p in inbox.iterdir()) == ["archive", "b.csv"]
    assert (inbox / "archive" / "a.csv").read_text() == "id\n1\n"
