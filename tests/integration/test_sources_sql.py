"""SQL sources against the real PostgreSQL and MariaDB servers: types, chunks, memory, errors."""

from __future__ import annotations

import datetime as dt
import gc
import time
import tracemalloc
from collections.abc import Iterator
from decimal import Decimal

import pandas as pd
import pyarrow as pa
import pytest
import sqlalchemy as sa

from grip.errors import SourceError
from grip.pgcopy import sends_valid_utf8
from grip.sources import SqlSourceConfig, build_source
from tests.harness.services import free_port, scratch_database

pytestmark = pytest.mark.integration

BIG_ROWS = 100_000
# COPY keeps a fixed few MiB in flight (the pipe and a block of CSV text), so the table it is
# measured on must be large enough for a tenth of it to fill those buffers.
HUGE_ROWS = 400_000
CYRILLIC = "Бруно Ковальчук"
MIXED = "Zoë 東京 😀"


def _engine(url: str, driver: str | None = None) -> sa.Engine:
    if driver:
        url = url.replace("postgresql+psycopg2://", f"postgresql+{driver}://", 1)
    return sa.create_engine(url)


@pytest.fixture(scope="module")
def pg(pg_url):
    """The scratch PostgreSQL database with the tables these tests read."""
    engine = _engine(pg_url)
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "CREATE TABLE src_typed (id integer PRIMARY KEY, name text, note varchar(50), "
            "amount numeric(12, 4), vip boolean, born date, registered_at timestamptz, "
            "updated_at timestamp, score double precision, big bigint, tags jsonb)"
        )
        conn.exec_driver_sql(
            "INSERT INTO src_typed VALUES "
            f"(1, '{CYRILLIC}', '{MIXED}', 12.3400, true, '1990-02-28', "
            "'2024-03-01 10:00:00+02', '2024-03-01 10:00:00.123456', 1.5, 9007199254740993, "
            """'{"k": [1, 2]}'), """
            "(2, '', NULL, NULL, false, NULL, NULL, NULL, NULL, NULL, NULL), "
            "(3, NULL, '', -0.0001, NULL, '2000-01-01', '2024-12-31 23:59:59.5+00', "
            "'2024-01-01 00:00:00', -2.25, -1, '[]')"
        )
        conn.exec_driver_sql(
            "CREATE TABLE src_big AS SELECT g AS id, 'visitor' || g || '@example.com' AS email, "
            f"'{CYRILLIC} ' || g AS name, (g %% 1000) / 8.0 AS fee, g %% 2 = 0 AS vip, "
            "timestamptz '2025-01-01 00:00:00+00' + g * interval '1 second' AS registered_at "
            f"FROM generate_series(1, {BIG_ROWS}) AS g"
        )
        conn.exec_driver_sql(
            f"CREATE TABLE src_huge AS SELECT * FROM src_big, generate_series(1, "
            f"{HUGE_ROWS // BIG_ROWS}) AS copy_number"
        )
        conn.exec_driver_sql("CREATE SEQUENCE src_counter")
    yield engine
    with engine.begin() as conn:
        for name in ("src_typed", "src_big", "src_huge", "src_changes"):
            conn.exec_driver_sql(f"DROP TABLE IF EXISTS {name}")
        conn.exec_driver_sql("DROP SEQUENCE IF EXISTS src_counter")
    engine.dispose()


@pytest.fixture(scope="module")
def maria(mariadb_url):
    """The scratch MariaDB database (utf8mb4) with the tables these tests read."""
    engine = _engine(mariadb_url)
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "CREATE TABLE src_typed (id INT PRIMARY KEY, name TEXT, note VARCHAR(50), "
            "amount DECIMAL(12, 4), vip BOOLEAN, born DATE, registered_at TIMESTAMP(6) NULL, "
            "updated_at DATETIME(6), score DOUBLE, big BIGINT, tags JSON)"
        )
        conn.exec_driver_sql("SET time_zone = '+02:00'")
        conn.exec_driver_sql(
            "INSERT INTO src_typed VALUES "
            f"(1, '{CYRILLIC}', '{MIXED}', 12.3400, true, '1990-02-28', "
            "'2024-03-01 10:00:00', '2024-03-01 10:00:00.123456', 1.5, 9007199254740993, "
            """'{"k": [1, 2]}'), """
            "(2, '', NULL, NULL, false, NULL, NULL, NULL, NULL, NULL, NULL), "
            "(3, NULL, '', -0.0001, NULL, '2000-01-01', '2025-01-01 01:59:59.5', "
            "'2024-01-01 00:00:00', -2.25, -1, '[]')"
        )
        conn.exec_driver_sql("SET time_zone = '+00:00'")
        conn.exec_driver_sql(
            "CREATE TABLE src_big (id INT PRIMARY KEY, email VARCHAR(100), name VARCHAR(100), "
            "fee DECIMAL(10, 3), vip BOOLEAN, registered_at TIMESTAMP NULL)"
        )
        start = dt.datetime(2025, 1, 1)
        rows = [
            (
                g,
                f"visitor{g}@example.com",
                f"{CYRILLIC} {g}",
                Decimal(g % 1000) / 8,
                g % 2 == 0,
                start + dt.timedelta(seconds=g),
            )
            for g in range(1, BIG_ROWS + 1)
        ]
        raw = conn.connection.driver_connection
        with raw.cursor() as cursor:
            for at in range(0, len(rows), 20_000):
                cursor.executemany(
                    "INSERT INTO src_big VALUES (%s, %s, %s, %s, %s, %s)", rows[at : at + 20_000]
                )
        conn.exec_driver_sql("CREATE TABLE src_audit (n INT)")
        conn.exec_driver_sql(
            "CREATE FUNCTION src_bump() RETURNS INT MODIFIES SQL DATA "
            "BEGIN INSERT INTO src_audit VALUES (1); RETURN 1; END"
        )
    yield engine
    with engine.begin() as conn:
        for name in ("src_typed", "src_big", "src_changes", "src_audit"):
            conn.exec_driver_sql(f"DROP TABLE IF EXISTS {name}")
        conn.exec_driver_sql("DROP FUNCTION IF EXISTS src_bump")
    engine.dispose()


def read_with(engine, *, watermark=None, required=None, **settings):
    config = SqlSourceConfig(kind="sql", url="unused://", **settings)
    source = build_source(config, engine=engine, watermark=watermark, required_columns=required)
    with source:
        frames = list(source.chunks())
    return (pd.concat(frames) if frames else pd.DataFrame()), frames, source


# Types -----------------------------------------------------------------------------------------

EXPECTED_DTYPES = {
    "id": "Int64",
    "name": "str",
    "note": "str",
    "amount": "object",
    "vip": "boolean",
    "born": "object",
    "registered_at": "datetime64[us, UTC]",
    "updated_at": "datetime64[us]",
    "score": "Float64",
    "big": "Int64",
}


@pytest.mark.parametrize(
    ("server", "driver", "method"),
    [
        ("pg", "psycopg2", "copy"),
        ("pg", "psycopg2", "cursor"),
        ("pg", "psycopg", "copy"),
        ("pg", "psycopg", "cursor"),
        ("maria", None, "cursor"),
    ],
)
def test_types_come_through(request, pg_url, server, driver, method):
    base = request.getfixturevalue(server)
    engine = _engine(pg_url, driver) if server == "pg" else base
    columns = ", ".join(EXPECTED_DTYPES)
    if method == "cursor":
        columns += ", tags"  # jsonb/JSON: the driver's objects, which COPY would turn into text
    query = f"SELECT {columns} FROM src_typed ORDER BY id"
    try:
        frame, frames, source = read_with(engine, query=query, method=method)
    finally:
        if engine is not base:
            engine.dispose()

    assert source.method_used == method
    assert {c: str(frame[c].dtype) for c in EXPECTED_DTYPES} == EXPECTED_DTYPES
    assert list(frame.index) == [1, 2, 3]
    first, second, third = (frame.loc[i] for i in (1, 2, 3))
    assert first["name"] == CYRILLIC
    assert first["note"] == MIXED
    assert first["amount"] == Decimal("12.3400")
    assert str(first["amount"]) == "12.3400"
    assert third["amount"] == Decimal("-0.0001")
    assert first["vip"]
    assert not second["vip"]
    assert pd.isna(third["vip"])
    assert first["born"] == dt.date(1990, 2, 28)
    assert second["born"] is None
    assert first["registered_at"] == pd.Timestamp("2024-03-01 08:00:00", tz="UTC")
    assert third["registered_at"] == pd.Timestamp("2024-12-31 23:59:59.5", tz="UTC")
    assert pd.isna(second["registered_at"])
    assert first["updated_at"] == pd.Timestamp("2024-03-01 10:00:00.123456")
    assert first["score"] == 1.5
    assert pd.isna(second["score"])
    assert first["big"] == 9007199254740993
    # NULL and the empty string stay apart.
    assert second["name"] == ""
    assert pd.isna(third["name"])
    assert third["note"] == ""
    assert pd.isna(second["note"])
    assert second["amount"] is None
    if method == "cursor":
        assert frame.loc[1, "tags"] in ({"k": [1, 2]}, '{"k": [1, 2]}', '{"k":[1,2]}')
    assert frames[0].attrs["source_file"] is None


def test_sqlite_demo_database_is_read_with_dtypes_from_its_values(tmp_path):
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'demo.db'}")
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE people (id INTEGER, name TEXT, note TEXT, fee REAL)")
        conn.exec_driver_sql(
            f"INSERT INTO people VALUES (1, '{CYRILLIC}', NULL, 1.5), (2, '', 'x', NULL), "
            "(3, NULL, '', 2)"
        )

    frame, frames, source = read_with(engine, table="people", chunk_size=2)

    assert [list(f.index) for f in frames] == [[1, 2], [3]]
    assert str(frame["id"].dtype) == "Int64"
    assert str(frame["name"].dtype) == "str"
    assert frame.loc[1, "name"] == CYRILLIC
    assert frame.loc[2, "name"] == ""
    assert pd.isna(frame.loc[3, "name"])
    assert frame["fee"].tolist()[0] == 1.5
    assert source.describe().startswith("sqlite table people at sqlite:///")

    # The read-only switch is undone: the caller's engine can still write.
    with engine.begin() as conn:
        conn.exec_driver_sql("INSERT INTO people VALUES (4, 'later', NULL, NULL)")
    engine.dispose()


# Chunks and bounded memory ---------------------------------------------------------------------


def _peak_of_read(engine, *, query: str, method: str, chunk_size: int) -> tuple[int, int]:
    """Peak memory of reading ``query`` (traced Python objects plus Arrow buffers), and rows."""
    gc.collect()
    arrow_peak = 0
    rows = 0
    tracemalloc.start()
    try:
        config = SqlSourceConfig(
            kind="sql", url="unused://", query=query, method=method, chunk_size=chunk_size
        )
        with build_source(config, engine=engine) as source:
            for frame in source.chunks():
                rows += len(frame)
                arrow_peak = max(arrow_peak, pa.total_allocated_bytes())
                del frame
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak + arrow_peak, rows


@pytest.mark.parametrize(
    ("server", "method", "table", "rows"),
    [
        ("pg", "cursor", "src_big", BIG_ROWS),
        ("pg", "copy", "src_huge", HUGE_ROWS),
        ("maria", "cursor", "src_big", BIG_ROWS),
    ],
)
def test_big_table_is_read_in_chunks_with_bounded_memory(request, server, method, table, rows):
    engine = request.getfixturevalue(server)
    everything = f"SELECT * FROM {table}"
    tenth = f"SELECT * FROM {table} LIMIT {rows // 10}"
    _peak_of_read(engine, query=tenth, method=method, chunk_size=5_000)  # warm up: imports

    small, small_rows = _peak_of_read(engine, query=tenth, method=method, chunk_size=5_000)
    full, full_rows = _peak_of_read(engine, query=everything, method=method, chunk_size=5_000)
    whole, _ = _peak_of_read(engine, query=everything, method=method, chunk_size=rows)

    assert (small_rows, full_rows) == (rows // 10, rows)
    # Ten times the rows, not twice the memory; the same rows in one chunk take far more.
    assert full < 2 * small, (full, small)
    assert whole > 3 * full, (whole, full)


def test_chunks_are_numbered_from_one_across_the_table(pg):
    _, frames, source = read_with(pg, table="src_big", chunk_size=30_000)

    assert [len(f) for f in frames] == [30_000, 30_000, 30_000, 10_000]
    assert [(f.index[0], f.index[-1]) for f in frames] == [
        (1, 30_000),
        (30_001, 60_000),
        (60_001, 90_000),
        (90_001, 100_000),
    ]
    assert frames[0].index.name == "row"
    assert source.rows_read == BIG_ROWS


@pytest.mark.parametrize(
    ("server", "method"), [("pg", "copy"), ("pg", "cursor"), ("maria", "cursor")]
)
def test_stopping_after_the_first_chunk_releases_the_server_at_once(request, server, method):
    engine = request.getfixturevalue(server)
    config = SqlSourceConfig(
        kind="sql", url="unused://", table="src_big", method=method, chunk_size=1_000
    )
    started = time.monotonic()
    with build_source(config, engine=engine) as source:
        chunks = source.chunks()
        first = next(chunks)
        chunks.close()
    assert len(first) == 1_000
    assert time.monotonic() - started < 10

    if server == "pg":
        with engine.connect() as conn:
            busy = conn.exec_driver_sql(
                "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' "
                "AND query LIKE %(copy)s AND pid <> pg_backend_pid()",
                {"copy": "%src_big%"},
            ).scalar()
        assert busy == 0
    frame, _, _ = read_with(engine, query="SELECT count(*) AS n FROM src_big")
    assert frame.loc[1, "n"] == BIG_ROWS


# Incremental reads -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("server", "column_type"), [("pg", "timestamptz"), ("maria", "TIMESTAMP(6) NULL")]
)
def test_incremental_read_by_cursor_column(request, server, column_type):
    engine = request.getfixturevalue(server)
    t0 = dt.datetime(2025, 5, 1, 12, 0, tzinfo=dt.UTC)

    def stamp(minutes: int) -> str:
        return (t0 + dt.timedelta(minutes=minutes)).strftime("%Y-%m-%d %H:%M:%S")

    with engine.begin() as conn:
        if server == "maria":
            conn.exec_driver_sql("SET time_zone = '+00:00'")
        conn.exec_driver_sql("DROP TABLE IF EXISTS src_changes")
        conn.exec_driver_sql(
            f"CREATE TABLE src_changes (id INT, email VARCHAR(50), updated_at {column_type})"
        )
        for i in range(1, 6):
            conn.exec_driver_sql(
                f"INSERT INTO src_changes VALUES ({i}, 'p{i}@example.com', '{stamp(10 - i)}')"
            )

    frame, _, source = read_with(engine, table="src_changes", cursor_column="updated_at")
    assert frame["id"].tolist() == [5, 4, 3, 2, 1]
    assert source.new_watermark == t0 + dt.timedelta(minutes=9)
    assert isinstance(source.new_watermark, dt.datetime)
    watermark = source.new_watermark

    with engine.begin() as conn:
        if server == "maria":
            conn.exec_driver_sql("SET time_zone = '+00:00'")
        conn.exec_driver_sql(f"UPDATE src_changes SET updated_at = '{stamp(30)}' WHERE id = 4")
        conn.exec_driver_sql(f"INSERT INTO src_changes VALUES (6, 'p6@x.org', '{stamp(20)}')")

    frame, _, again = read_with(
        engine, table="src_changes", cursor_column="updated_at", watermark=watermark
    )
    assert frame["id"].tolist() == [1, 6, 4]  # 1 sits on the watermark itself: read again
    assert again.new_watermark == t0 + dt.timedelta(minutes=30)

    frame, _, query_source = read_with(
        engine,
        query="SELECT id, updated_at FROM src_changes WHERE email LIKE 'p%'",
        cursor_column="updated_at",
        watermark=again.new_watermark,
    )
    assert frame["id"].tolist() == [4]
    assert query_source.new_watermark == again.new_watermark


@pytest.mark.parametrize("server", ["pg", "maria"])
def test_watermark_given_back_as_text_is_read_as_the_cursor_type(request, server):
    engine = request.getfixturevalue(server)
    # A ledger keeping JSON hands back ISO 8601 text.
    frame, _, source = read_with(
        engine,
        table="src_typed",
        cursor_column="registered_at",
        watermark="2024-06-01T00:00:00+00:00",
    )
    assert frame["id"].tolist() == [3]
    assert source.new_watermark == dt.datetime(2024, 12, 31, 23, 59, 59, 500_000, tzinfo=dt.UTC)

    frame, _, _ = read_with(engine, table="src_typed", cursor_column="born", watermark="1995-01-01")
    assert frame["id"].tolist() == [3]

    with pytest.raises(
        SourceError, match=r"the watermark 'yesterday' is not a value of the cursor"
    ):
        read_with(engine, table="src_typed", cursor_column="big", watermark="yesterday")


def test_incremental_read_with_nothing_new_keeps_no_watermark(pg):
    frame, frames, source = read_with(
        pg,
        table="src_typed",
        cursor_column="id",
        watermark=100,
    )
    assert frames == []
    assert source.new_watermark is None


# Read only -------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["cursor", "auto"])
def test_postgres_read_runs_in_a_read_only_transaction(pg, method):
    def counter() -> tuple:
        with pg.connect() as conn:
            return tuple(
                conn.exec_driver_sql("SELECT last_value, is_called FROM src_counter").one()
            )

    before = counter()
    with pytest.raises(
        SourceError,
        match=r"the read failed \(cannot execute nextval\(\) in a read-only transaction",
    ):
        read_with(pg, query="SELECT nextval('src_counter') AS n", method=method)

    assert counter() == before


def test_mariadb_read_runs_in_a_read_only_transaction(maria):
    with pytest.raises(SourceError, match=r"READ ONLY transaction"):
        read_with(maria, query="SELECT src_bump() AS n")

    with maria.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM src_audit").scalar() == 0
        # The session time zone the source set for its read is put back.
        assert conn.exec_driver_sql("SELECT @@session.time_zone").scalar() != "+00:00" or (
            conn.exec_driver_sql("SELECT @@global.time_zone").scalar() == "+00:00"
        )


# Errors ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("server", "settings", "message"),
    [
        (
            "pg",
            {"table": "nope"},
            r"^postgres table nope at postgresql\+psycopg2://.*: table 'nope' does not exist; "
            r"the tables there are: .*src_typed",
        ),
        (
            "maria",
            {"table": "nope"},
            r"^mysql table nope at mysql\+pymysql://.*: table 'nope' does not exist; the tables "
            r"there are: .*src_typed",
        ),
        (
            "pg",
            {"table": "src_typed", "cursor_column": "changed"},
            r"the cursor column 'changed' is not among the columns 'id', 'name', ",
        ),
        (
            "maria",
            {"query": "SELECT id FROM src_typed", "cursor_column": "changed"},
            r"the cursor column 'changed' is not among the columns 'id'$",
        ),
        ("pg", {"query": "SELECT 1 / 0 AS x"}, r": the read failed \(division by zero\)$"),
        ("pg", {"query": "SELEC 1"}, r": the read failed \(syntax error at or near"),
        (
            "maria",
            {"query": "SELECT missing_column FROM src_typed"},
            r": the read failed \(\(1054, \"Unknown column 'missing_column'",
        ),
        (
            "pg",
            {"query": "SELECT 1 AS a, 2 AS a"},
            r"the query returns column\(s\) 'a' more than once; give each its own name with AS",
        ),
        (
            "pg",
            {"table": "src_typed", "method": "copy"},
            r"method copy cannot carry tags \(type oid 3802\) unchanged",
        ),
        ("maria", {"table": "src_typed", "method": "copy"}, r"method copy needs PostgreSQL"),
    ],
)
def test_read_errors_name_the_source_and_what_failed(request, server, settings, message):
    engine = request.getfixturevalue(server)
    with pytest.raises(SourceError, match=message):
        read_with(engine, **settings)


@pytest.mark.parametrize("server", ["pg", "maria"])
def test_missing_required_columns_are_named(request, server):
    engine = request.getfixturevalue(server)
    with pytest.raises(
        SourceError,
        match=r"table src_typed .*: missing column\(s\) 'email', 'company' that the mapping "
        r"needs; the columns present are 'id', 'name', 'note'",
    ):
        read_with(engine, table="src_typed", required=["id", "email", "company"])


def test_unreachable_server_is_one_clear_error():
    port = free_port()
    config = SqlSourceConfig(
        kind="sql", url=f"postgresql+psycopg2://grip:Sup3rSecret@127.0.0.1:{port}/x", table="t"
    )
    with pytest.raises(SourceError) as caught, build_source(config) as source:
        list(source.chunks())

    text = str(caught.value)
    assert text.startswith(f"postgres table t at postgresql+psycopg2://grip:***@127.0.0.1:{port}")
    assert "cannot connect to the database" in text
    assert "Connection refused" in text
    assert "Sup3rSecret" not in text


def test_postgres_unknown_role_error_holds_no_password(pg_url):
    url = sa.make_url(pg_url).set(username="grip_nobody", password="Pg-Pass-7731")
    config = SqlSourceConfig(
        kind="sql", url=url.render_as_string(hide_password=False), table="src_typed"
    )
    with (
        pytest.raises(SourceError, match=r"cannot connect to the database") as caught,
        build_source(config) as source,
    ):
        list(source.chunks())
    assert 'role "grip_nobody" does not exist' in str(caught.value)
    assert "Pg-Pass-7731" not in str(caught.value)


@pytest.fixture
def maria_user(maria, mariadb_url):
    """A MariaDB login with a password, allowed to read the scratch database only."""
    database = sa.make_url(mariadb_url).database
    with maria.begin() as conn:
        conn.exec_driver_sql("DROP USER IF EXISTS 'grip_reader'@'%%'")
        conn.exec_driver_sql("CREATE USER 'grip_reader'@'%%' IDENTIFIED BY 'Right-Pass-4417'")
        conn.exec_driver_sql(f"GRANT SELECT ON {database}.* TO 'grip_reader'@'%%'")
    yield sa.make_url(mariadb_url).set(username="grip_reader", password="Right-Pass-4417")
    with maria.begin() as conn:
        conn.exec_driver_sql("DROP USER IF EXISTS 'grip_reader'@'%%'")


def test_mariadb_bad_password_error_holds_no_password(maria_user):
    url = maria_user.set(password="Wrong-Pass-9931").render_as_string(hide_password=False)
    config = SqlSourceConfig(kind="sql", url=url, table="src_typed")

    with pytest.raises(SourceError) as caught, build_source(config) as source:
        list(source.chunks())

    text = str(caught.value)
    assert "cannot connect to the database" in text
    assert "Access denied for user 'grip_reader'" in text
    assert "Wrong-Pass-9931" not in text
    assert "Right-Pass-4417" not in text


def test_mariadb_reader_login_reads_through_its_url(maria_user):
    config = SqlSourceConfig(
        kind="sql", url=maria_user.render_as_string(hide_password=False), table="src_typed"
    )
    with build_source(config) as source:
        frame = pd.concat(list(source.chunks()))
    assert frame.loc[1, "note"] == MIXED
    assert "Right-Pass-4417" not in source.describe()


# Through Airflow connections -------------------------------------------------------------------


def _airflow_conn(monkeypatch, conn_id: str, url: sa.URL, conn_type: str) -> None:
    import json

    monkeypatch.setenv(
        f"AIRFLOW_CONN_{conn_id.upper()}",
        json.dumps(
            {
                "conn_type": conn_type,
                "host": url.host,
                "port": url.port,
                "login": url.username,
                "password": url.password,
                "schema": url.database,
            }
        ),
    )


def test_airflow_postgres_connection_reads_through_the_provider_hook(
    airflow_home, monkeypatch, pg, pg_url
):
    from grip.airflow.sources import build_source_from_airflow

    _airflow_conn(monkeypatch, "partner_pg", sa.make_url(pg_url), "postgres")
    config = SqlSourceConfig(kind="sql", conn_id="partner_pg", table="src_big")

    with build_source_from_airflow(config) as source:
        rows = sum(len(f) for f in source.chunks())
        assert source._engine is not None
        assert source._engine.dialect.driver == "psycopg2"

    assert rows == BIG_ROWS
    assert source.method_used == "copy"
    assert source.describe() == "postgres table src_big via conn partner_pg"


def test_airflow_mariadb_connection_reads_utf8mb4(airflow_home, monkeypatch, maria_user):
    from grip.airflow.sources import build_source_from_airflow

    _airflow_conn(monkeypatch, "partner_maria", maria_user, "mysql")
    config = SqlSourceConfig(kind="sql", conn_id="partner_maria", table="src_typed")

    with build_source_from_airflow(config) as source:
        frame = pd.concat(list(source.chunks()))

    assert frame.loc[1, "note"] == MIXED
    assert frame.loc[1, "name"] == CYRILLIC
    assert source.describe() == "mysql table src_typed via conn partner_maria"


def test_airflow_bad_credentials_name_the_connection_and_hide_the_password(
    airflow_home, monkeypatch, maria_user
):
    from grip.airflow.sources import build_source_from_airflow

    _airflow_conn(monkeypatch, "partner_bad", maria_user.set(password="Nope-Pass-5150"), "mysql")
    config = SqlSourceConfig(kind="sql", conn_id="partner_bad", table="src_typed")

    with pytest.raises(SourceError) as caught, build_source_from_airflow(config) as source:
        list(source.chunks())

    text = str(caught.value)
    assert text.startswith("mysql table src_typed via conn partner_bad: cannot connect")
    assert "Access denied" in text
    assert "Nope-Pass-5150" not in text


def test_airflow_unknown_connection_id(airflow_home):
    from grip.airflow.sources import build_source_from_airflow

    config = SqlSourceConfig(kind="sql", conn_id="no_such_conn", table="t")
    with pytest.raises(
        SourceError, match=r"connection id 'no_such_conn' is not defined in Airflow"
    ):
        build_source_from_airflow(config)


@pytest.fixture(scope="module")
def sql_ascii_url(pg_url: str) -> Iterator[str]:
    """A database whose encoding is SQL_ASCII: PostgreSQL stores and sends its bytes unchecked."""
    from tests.conftest import PG_ADMIN_URL, _scratch_name

    yield from scratch_database(
        PG_ADMIN_URL,
        _scratch_name("grip_ascii"),
        create_sql="CREATE DATABASE {name} ENCODING 'SQL_ASCII' LC_COLLATE 'C' LC_CTYPE 'C' "
        "TEMPLATE template0",
    )


@pytest.mark.parametrize("driver", ["psycopg2", "psycopg"])
def test_text_from_a_utf8_database_is_not_checked_again_and_reads_whole(pg_url, driver) -> None:
    engine = _engine(pg_url, driver)
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE IF EXISTS src_utf8")
        conn.exec_driver_sql("CREATE TABLE src_utf8 (reg_id text, name text)")
        conn.exec_driver_sql(
            "INSERT INTO src_utf8 VALUES ('R1', %(a)s), ('R2', %(b)s)", {"a": CYRILLIC, "b": MIXED}
        )
    with engine.connect() as conn:
        assert sends_valid_utf8(conn.connection.driver_connection)
    config = SqlSourceConfig(kind="sql", url="unused://", table="src_utf8", method="copy")
    with build_source(config, engine=engine) as source:
        frame = pd.concat(list(source.chunks()))
    assert frame["name"].tolist() == [CYRILLIC, MIXED]
    engine.dispose()


def test_bytes_from_a_sql_ascii_database_are_checked_and_bad_ones_named(sql_ascii_url) -> None:
    engine = _engine(sql_ascii_url)
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE IF EXISTS src_bytes")
        conn.exec_driver_sql("CREATE TABLE src_bytes (reg_id text, name text)")
        conn.exec_driver_sql("INSERT INTO src_bytes VALUES ('R1', 'plain'), ('R2', E'bad \\xff')")
    with engine.connect() as conn:
        assert not sends_valid_utf8(conn.connection.driver_connection)
    config = SqlSourceConfig(kind="sql", url="unused://", table="src_bytes", method="copy")
    with (
        build_source(config, engine=engine) as source,
        pytest.raises(SourceError, match=r"src_bytes.*could not be read from COPY.*method: cursor"),
    ):
        list(source.chunks())
    engine.dispose()


def test_a_psycopg_connection_to_a_sql_ascii_database_is_not_trusted_with_utf8(
    sql_ascii_url,
) -> None:
    import psycopg

    url = sa.make_url(sql_ascii_url)
    with psycopg.connect(
        host=url.host, port=url.port, user=url.username, dbname=url.database
    ) as raw:
        assert not sends_valid_utf8(raw)
