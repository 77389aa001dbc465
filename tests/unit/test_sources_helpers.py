"""The small rules sources rely on: CSV record ends, inferred dtypes, drops, names, host keys."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from grip.errors import ConfigError
from grip.sources import SourceFile, SqlSourceConfig, build_source
from grip.sources.base import processed_matcher
from grip.sources.files import archive_name
from grip.sources.sftp import parse_host_key
from grip.sources.sql import _infer_kind, _record_end

UTC = dt.UTC


@pytest.mark.parametrize(
    ("data", "end"),
    [
        (b"1,a\n2,b\n", 8),
        (b"1,a\n2,b", 4),
        (b"no line end", 0),
        (b'1,"two\nlines"\n2,"open\n', 14),
        (b'1,"open\nstill open\n', 0),
        (b'1,"say ""hi""\n"\n2,x\n', 20),
        (b'1,"a""\n', 0),
    ],
)
def test_record_end_ignores_line_breaks_inside_quotes(data, end):
    assert _record_end(data) == end


@pytest.mark.parametrize(
    ("values", "kind"),
    [
        ([None, None], None),
        ([1, None, 3], "int"),
        ([True, False], "bool"),
        ([1, 2.5], "float"),
        ([Decimal("1.50")], "decimal"),
        (["a", None, ""], "str"),
        ([dt.datetime(2025, 1, 1)], "datetime"),
        ([dt.datetime(2025, 1, 1, tzinfo=UTC)], "datetime_tz"),
        ([dt.datetime(2025, 1, 1), dt.datetime(2025, 1, 1, tzinfo=UTC)], "object"),
        ([dt.date(2025, 1, 1)], "date"),
        ([1, "a"], "object"),
        ([b"\x00"], "object"),
    ],
)
def test_dtype_is_inferred_from_values_where_the_driver_gives_no_type(values, kind):
    assert _infer_kind(values) == kind


def test_processed_files_match_by_name_or_by_name_size_and_second():
    when = dt.datetime(2025, 3, 1, 10, 0, 0, 250_000, tzinfo=UTC)
    seen = processed_matcher([SourceFile("a.csv", 10, when, "f" * 64), "b.csv"])

    assert seen(SourceFile("a.csv", 10, when.replace(microsecond=0)))
    assert not seen(SourceFile("a.csv", 11, when))
    assert not seen(SourceFile("a.csv", 10, when + dt.timedelta(seconds=1)))
    assert seen(SourceFile("b.csv", 999, when))
    assert not seen(SourceFile("c.csv", 10, when))


def test_archive_name_is_kept_unless_taken():
    assert archive_name("a.csv.gz", {"b.csv"}) == "a.csv.gz"
    renamed = archive_name("a.csv.gz", {"a.csv.gz"})
    assert renamed.startswith("a.")
    assert renamed.endswith("Z.csv.gz")
    assert renamed != "a.csv.gz"


def test_sql_source_description_hides_the_password():
    config = SqlSourceConfig(
        kind="sql", url="postgresql+psycopg2://grip:Hush-Hush-1@db.example/expo", table="visitors"
    )
    assert build_source(config).describe() == (
        "postgres table visitors at postgresql+psycopg2://grip:***@db.example/expo"
    )
    query = SqlSourceConfig(kind="sql", url_env="PARTNER_DB_URL", query="SELECT 1")
    assert build_source(query).describe() == "database query at the URL in $PARTNER_DB_URL"


def test_sql_source_without_url_or_engine_says_how_to_build_it(monkeypatch):
    monkeypatch.delenv("GRIP_NO_SUCH_URL", raising=False)
    by_conn = SqlSourceConfig(kind="sql", conn_id="partner_db", table="visitors")
    with pytest.raises(ConfigError, match=r"via conn partner_db: no database URL; inside Airflow"):
        build_source(by_conn).open()

    by_env = SqlSourceConfig(kind="sql", url_env="GRIP_NO_SUCH_URL", table="visitors")
    with pytest.raises(ConfigError, match=r"environment variable GRIP_NO_SUCH_URL is not set"):
        build_source(by_env).open()


ED25519 = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"


@pytest.mark.parametrize(
    "text", [ED25519, f"{ED25519} comment@host", f"[127.0.0.1]:2222 {ED25519}"]
)
def test_host_key_is_read_from_a_key_or_known_hosts_line(text):
    key = parse_host_key(text, "here")
    assert key.get_name() == "ssh-ed25519"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("AAAAC3NzaC1lZDI1NTE5", r"here: host_key must look like 'ssh-ed25519 AAAA\.\.\.'"),
        ("ssh-ed25519 not-base64!", r"here: host_key cannot be read"),
        ("ssh-nope AAAA", r"here: host_key cannot be read"),
    ],
)
def test_bad_host_key_is_a_config_error(text, message):
    with pytest.raises(ConfigError, match=message):
        parse_host_key(text, "here")
