"""SFTP sources against a real OpenSSH sshd: authentication, host keys, formats, selection."""

from __future__ import annotations

import datetime as dt
import gzip
import hashlib
import json
import os
import threading
import time
import zipfile
from pathlib import Path

import openpyxl
import pandas as pd
import pytest

from grip.errors import SourceError
from grip.sources import SftpSourceConfig, SourceFile, build_source

pytestmark = pytest.mark.integration

CYRILLIC = "Бруно Ковальчук"
PASSWORD_ENV = "GRIP_TEST_SFTP_PASSWORD"


@pytest.fixture
def drop_dir(sshd, request) -> Path:
    """A fresh folder in the server's upload folder (the same path locally and remotely)."""
    folder = sshd.upload_dir / request.node.name.replace("[", "-").replace("]", "")[:80]
    folder.mkdir()
    folder.chmod(0o777)
    return folder


def sftp_config(sshd, folder: Path, *, auth: str = "key", **settings) -> SftpSourceConfig:
    base = {
        "kind": "sftp",
        "host": sshd.host,
        "port": sshd.port,
        "username": sshd.username,
        "folder": str(folder),
        "settle_seconds": 0,
    }
    if auth == "key":
        base["key_file"] = str(sshd.private_key_path)
        base["host_key"] = sshd.host_public_key
    else:
        base["password_env"] = PASSWORD_ENV
        base["known_hosts"] = str(sshd.known_hosts_path)
    return SftpSourceConfig.model_validate({**base, **settings})


def read_all(config, *, processed=(), required=None):
    source = build_source(config, processed=processed, required_columns=required)
    with source:
        frames = list(source.chunks())
    return (pd.concat(frames) if frames else pd.DataFrame()), frames, source


def put(folder: Path, name: str, data: bytes | str, *, age: float = 100.0) -> Path:
    path = folder / name
    path.write_bytes(data if isinstance(data, bytes) else data.encode())
    path.chmod(0o666)
    when = time.time() - age
    os.utime(path, (when, when))
    return path


# Authentication and host keys ------------------------------------------------------------------


@pytest.mark.parametrize("auth", ["password", "key"])
def test_reads_a_csv_with_password_or_key(sshd, drop_dir, monkeypatch, auth):
    monkeypatch.setenv(PASSWORD_ENV, sshd.password)
    body = f"id,name\n1,{CYRILLIC}\n2,Zoë\n".encode()
    path = put(drop_dir, "visitors.csv", body)

    frame, frames, source = read_all(sftp_config(sshd, drop_dir, auth=auth))

    assert frame["name"].tolist() == [CYRILLIC, "Zoë"]
    assert frames[0].attrs["source_file"] == "visitors.csv"
    [record] = source.files
    assert record.name == "visitors.csv"
    assert record.size == len(body)
    assert record.sha256 == hashlib.sha256(body).hexdigest()
    assert record.mtime == dt.datetime.fromtimestamp(int(path.stat().st_mtime), dt.UTC)
    assert source.describe() == (
        f"sftp {drop_dir}/* (newest) on {sshd.username}@{sshd.host}:{sshd.port}"
    )


def test_host_key_mismatch_is_refused(sshd, drop_dir):
    put(drop_dir, "a.csv", "id\n1\n")
    other_key = sshd.public_key.split()[:2]  # an ed25519 key, but not the server's
    config = sftp_config(sshd, drop_dir, host_key=" ".join(other_key))

    with pytest.raises(
        SourceError,
        match=r"on gripsftp\w+@127\.0\.0\.1:\d+: the server's host key does not match the known "
        r"one \(it offered ssh-ed25519 SHA256:",
    ):
        read_all(config)


def test_unknown_host_key_is_refused(sshd, drop_dir, tmp_path, monkeypatch):
    monkeypatch.setenv(PASSWORD_ENV, sshd.password)
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    config = sftp_config(sshd, drop_dir, auth="password", known_hosts=str(empty))

    with pytest.raises(SourceError, match=r"the server's host key is not known; give it as"):
        read_all(config)


def test_wrong_password_is_an_authentication_error_without_the_password(
    sshd, drop_dir, monkeypatch
):
    monkeypatch.setenv(PASSWORD_ENV, "Wrong-Sftp-Pass-31")
    config = sftp_config(sshd, drop_dir, auth="password")

    with pytest.raises(SourceError, match=r"authentication failed") as caught:
        read_all(config)

    assert "Wrong-Sftp-Pass-31" not in str(caught.value)
    assert sshd.password not in str(caught.value)


def test_missing_folder_is_named(sshd):
    config = sftp_config(sshd, sshd.upload_dir / "no-such-folder")
    with pytest.raises(SourceError, match=r"folder .*/no-such-folder does not exist on the server"):
        read_all(config)


# Formats and encodings -------------------------------------------------------------------------


def _xlsx(rows: list[list[object]], title: str = "Visitors") -> bytes:
    workbook = openpyxl.Workbook()
    workbook.active.title = "Cover"
    workbook.active.append(["nothing here"])
    sheet = workbook.create_sheet(title)
    for row in rows:
        sheet.append(row)
    path = Path(f"/tmp/grip-test-{os.getpid()}-{time.monotonic_ns()}.xlsx")
    try:
        workbook.save(path)
        return path.read_bytes()
    finally:
        path.unlink(missing_ok=True)


def _zip(name: str, data: bytes) -> bytes:
    path = Path(f"/tmp/grip-test-{os.getpid()}-{time.monotonic_ns()}.zip")
    try:
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
            archive.writestr(name, data)
        return path.read_bytes()
    finally:
        path.unlink(missing_ok=True)


FORMATS = [
    ("utf8.csv", f"id;name\n1;{CYRILLIC}\n".encode(), {}),
    ("bom.csv", b"\xef\xbb\xbf" + f"id,name\n1,{CYRILLIC}\n".encode(), {}),
    ("win.csv", "id\tname\n1\tZoë – 5 €\n".encode("cp1252"), {}),
    ("latin.csv", "id|name\n1|Zoë Ærø\n".encode("latin-1"), {"encoding": "latin-1"}),
    ("multi.csv", f'id,name\n1,"{CYRILLIC}\nsecond line"\n'.encode(), {}),
    ("book.xlsx", _xlsx([["id", "name"], [1, CYRILLIC]]), {"sheet": "Visitors"}),
    ("array.json", json.dumps([{"id": 1, "name": CYRILLIC}]).encode(), {}),
    ("lines.ndjson", (json.dumps({"id": 1, "name": CYRILLIC}) + "\n").encode(), {}),
    ("packed.csv.gz", gzip.compress(f"id,name\n1,{CYRILLIC}\n".encode()), {}),
    ("packed.zip", _zip("inner.json", json.dumps([{"id": 1, "name": CYRILLIC}]).encode()), {}),
]
EXPECTED_NAMES = {
    "win.csv": "Zoë – 5 €",
    "latin.csv": "Zoë Ærø",
    "multi.csv": f"{CYRILLIC}\nsecond line",
}


@pytest.mark.parametrize(("name", "data", "settings"), FORMATS, ids=[f[0] for f in FORMATS])
def test_each_format_and_encoding(sshd, drop_dir, name, data, settings):
    put(drop_dir, name, data)

    frame, _, source = read_all(sftp_config(sshd, drop_dir, **settings))

    assert list(frame.columns) == ["id", "name"]
    assert str(frame.loc[1, "id"]) == "1"
    assert frame.loc[1, "name"] == EXPECTED_NAMES.get(name, CYRILLIC)
    assert source.files[0].sha256 == hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize(
    ("name", "data", "required", "message"),
    [
        ("empty.csv", b"", None, r"^empty\.csv: the file is empty \(0 bytes\)"),
        (
            "cols.csv",
            b"id,first_name\n1,Ann\n",
            ["email"],
            r"^cols\.csv: missing column\(s\) 'email' that the mapping needs; the columns "
            r"present are 'id', 'first_name'",
        ),
        ("cut.xlsx", None, None, r"^cut\.xlsx: not a readable XLSX workbook"),
        (
            "cut.csv.gz",
            gzip.compress(os.urandom(30_000))[:-500],
            None,
            r"^cut\.csv\.gz: broken gzip stream",
        ),
    ],
)
def test_broken_drops_raise_an_error_naming_the_file(sshd, drop_dir, name, data, required, message):
    if data is None:
        whole = _xlsx([["id", "name"]] + [[i, f"name {i}"] for i in range(3000)])
        data = whole[: len(whole) // 2]
    put(drop_dir, name, data)

    with pytest.raises(SourceError, match=message):
        read_all(sftp_config(sshd, drop_dir), required=required)


def test_bad_csv_line_is_a_reject_not_a_crash(sshd, drop_dir):
    put(drop_dir, "bad.csv", "id,name\n1,Ann\n2,Bob,extra\n3,Cid\n")

    frame, _, source = read_all(sftp_config(sshd, drop_dir))

    assert frame["name"].tolist() == ["Ann", "Cid"]
    assert [(r.file, r.line) for r in source.rejects] == [("bad.csv", 3)]


def test_file_over_the_size_limit_is_refused(sshd, drop_dir):
    put(drop_dir, "big.csv", "id\n" + "1\n" * 5000)

    with pytest.raises(SourceError, match=r"^big\.csv: 10,003 bytes is more than max_bytes"):
        read_all(sftp_config(sshd, drop_dir, max_bytes=10_000))


# Choosing files --------------------------------------------------------------------------------


def test_newest_matching_file_is_chosen(sshd, drop_dir):
    put(drop_dir, "export_1.csv", "id\n1\n", age=300)
    put(drop_dir, "export_3.csv", "id\n3\n", age=100)
    put(drop_dir, "export_2.csv", "id\n2\n", age=200)
    put(drop_dir, "notes.txt", "id\n9\n", age=10)

    frame, _, source = read_all(sftp_config(sshd, drop_dir, pattern="export_*.csv"))

    assert frame["id"].tolist() == ["3"]
    assert [f.name for f in source.files] == ["export_3.csv"]

    _, frames, again = read_all(
        sftp_config(sshd, drop_dir, pattern="export_*.csv"), processed=source.files
    )
    assert frames == []
    assert again.files == []


def test_unprocessed_files_in_a_stable_order(sshd, drop_dir):
    put(drop_dir, "b.csv", "id\nb\n", age=100)
    put(drop_dir, "a.csv", "id\na\n", age=100)
    put(drop_dir, "c.csv", "id\nc\n", age=300)
    put(drop_dir, "d.csv", "id\nd\n", age=50)
    done = [SourceFile.from_dict(read_all(sftp_config(sshd, drop_dir))[2].files[0].to_dict())]

    _, frames, source = read_all(sftp_config(sshd, drop_dir, select="unprocessed"), processed=done)

    assert [f.attrs["source_file"] for f in frames] == ["c.csv", "a.csv", "b.csv"]
    assert [f.name for f in source.files] == ["c.csv", "a.csv", "b.csv"]


def test_file_still_being_written_is_left_for_the_next_run(sshd, drop_dir):
    put(drop_dir, "complete.csv", "id\n1\n")
    growing = put(drop_dir, "growing.csv", "id\n", age=0)
    stop = threading.Event()

    def upload_slowly() -> None:
        count = 0
        while not stop.is_set():
            count += 1
            with growing.open("a") as out:
                out.write(f"{count}\n")
            time.sleep(0.05)

    writer = threading.Thread(target=upload_slowly)
    writer.start()
    try:
        config = sftp_config(sshd, drop_dir, select="unprocessed", settle_seconds=0.6)
        _, frames, source = read_all(config)
    finally:
        stop.set()
        writer.join()

    assert [f.attrs["source_file"] for f in frames] == ["complete.csv"]
    assert source.left_for_next_run == ["growing.csv"]

    # Once the upload is over, the next run reads it.
    _, frames, _ = read_all(config, processed=source.files)
    assert [f.attrs["source_file"] for f in frames] == ["growing.csv"]


def test_archive_moves_the_files_read(sshd, drop_dir):
    put(drop_dir, "one.csv", "id\n1\n", age=200)
    put(drop_dir, "two.csv", "id\n2\n", age=100)
    config = sftp_config(sshd, drop_dir, select="unprocessed", archive_folder="done")

    with build_source(config) as source:
        assert sum(len(f) for f in source.chunks()) == 2
        moved = source.archive()

    assert moved == [f"{drop_dir}/done/one.csv", f"{drop_dir}/done/two.csv"]
    assert sorted(p.name for p in drop_dir.iterdir()) == ["done"]
    assert sorted(p.name for p in (drop_dir / "done").iterdir()) == ["one.csv", "two.csv"]

    # A later drop of the same name does not overwrite the archived one.
    put(drop_dir, "one.csv", "id\n1\n1\n")
    with build_source(config) as source:
        list(source.chunks())
        [again] = source.archive()
    assert again.startswith(f"{drop_dir}/done/one.")
    assert (drop_dir / "done" / "one.csv").read_text() == "id\n1\n"


# Through Airflow connections -------------------------------------------------------------------


def _airflow_sftp(monkeypatch, conn_id: str, sshd, **extra) -> None:
    fields = {
        "conn_type": "sftp",
        "host": sshd.host,
        "port": sshd.port,
        "login": sshd.username,
        "extra": extra,
    }
    if "key_file" not in extra:
        fields["password"] = sshd.password
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(fields))


@pytest.mark.parametrize(
    "extra",
    [
        pytest.param({"host_key": "HOST_KEY"}, id="password-host_key"),
        pytest.param({"key_file": "KEY_FILE", "host_key": "HOST_KEY"}, id="key-host_key"),
        pytest.param({"known_hosts": "KNOWN_HOSTS"}, id="password-known_hosts"),
    ],
)
def test_airflow_sftp_connection(airflow_home, monkeypatch, sshd, drop_dir, extra):
    from grip.airflow.sources import build_source_from_airflow

    values = {
        "HOST_KEY": sshd.host_public_key,
        "KEY_FILE": str(sshd.private_key_path),
        "KNOWN_HOSTS": str(sshd.known_hosts_path),
    }
    _airflow_sftp(monkeypatch, "partner_sftp", sshd, **{k: values[v] for k, v in extra.items()})
    put(drop_dir, "visitors.csv", f"id,name\n1,{CYRILLIC}\n")
    config = SftpSourceConfig(
        kind="sftp", conn_id="partner_sftp", folder=str(drop_dir), settle_seconds=0
    )

    with build_source_from_airflow(config) as source:
        frame = pd.concat(list(source.chunks()))

    assert frame.loc[1, "name"] == CYRILLIC
    assert source.describe() == f"sftp {drop_dir}/* (newest) via conn partner_sftp"


def test_airflow_sftp_host_key_mismatch_names_the_connection(
    airflow_home, monkeypatch, sshd, drop_dir
):
    from grip.airflow.sources import build_source_from_airflow

    wrong = " ".join(sshd.public_key.split()[:2])
    _airflow_sftp(monkeypatch, "partner_sftp_bad", sshd, host_key=wrong)
    config = SftpSourceConfig(
        kind="sftp", conn_id="partner_sftp_bad", folder=str(drop_dir), settle_seconds=0
    )

    with (
        pytest.raises(
            SourceError,
            match=r"^sftp .* via conn partner_sftp_bad: the server's host key does not match",
        ) as caught,
        build_source_from_airflow(config) as source,
    ):
        list(source.chunks())
    assert sshd.password not in str(caught.value)
