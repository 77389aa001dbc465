"""Partner SQL databases: a table or query, read in chunks in a read-only transaction."""

from __future__ import annotations

import contextlib
import datetime as dt
import decimal
import logging
import os
import re
from collections.abc import Callable, Collection, Generator, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Literal

from grip.errors import ConfigError, SourceError
from grip.pgcopy import COPY_BLOCK, CopyReader, is_psycopg2, sends_valid_utf8
from grip.sources.base import ROW_INDEX_NAME, SOURCE_FILE_ATTR, Source, check_required_columns

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa
    from sqlalchemy.engine import Connection, Engine

    from grip.sources.config import SqlSourceConfig

logger = logging.getLogger(__name__)

Kind = Literal[
    "int", "float", "bool", "decimal", "str", "date", "datetime", "datetime_tz", "object"
]
"""How a column is carried into pandas; see :class:`SqlSource` for the dtype of each."""

# PostgreSQL type OIDs, the same for psycopg2 and psycopg 3. Every type listed here is written
# by COPY ... (FORMAT csv) in a form that reads back to the same value; others take the cursor.
_PG_KINDS: dict[int, Kind] = {
    16: "bool",
    20: "int",
    21: "int",
    23: "int",
    26: "int",
    700: "float",
    701: "float",
    1700: "decimal",
    1082: "date",
    1114: "datetime",
    1184: "datetime_tz",
    18: "str",
    19: "str",
    25: "str",
    1042: "str",
    1043: "str",
    2950: "str",
}

# MySQL and MariaDB field types as PyMySQL reports them.
_MYSQL_INT = {2, 3, 8, 9, 13}  # SHORT, LONG, LONGLONG, INT24, YEAR
_MYSQL_TEXT = {15, 245, 247, 248, 249, 250, 251, 252, 253, 254}  # VARCHAR, JSON, ENUM, ..., STRING
_MYSQL_KINDS: dict[int, Kind] = {
    0: "decimal",
    246: "decimal",
    4: "float",
    5: "float",
    10: "date",
    14: "date",
    12: "datetime",
    7: "datetime_tz",  # TIMESTAMP, read with the session time zone at UTC
}
_MYSQL_BINARY_CHARSET = 63

_PYTHON_KINDS: dict[type, Kind] = {
    bool: "bool",
    int: "int",
    float: "float",
    decimal.Decimal: "decimal",
    str: "str",
    dt.datetime: "datetime",
    dt.date: "date",
}

_SECRET_IN_TEXT = re.compile(r"(password|pwd|passwd)\s*[=:]\s*\S+", re.IGNORECASE)
_MYSQL_NET_WRITE_TIMEOUT = 3600


class SqlSource(Source):
    """A table or query in a partner database, read in chunks.

    Rows travel through a server-side cursor (PostgreSQL, MariaDB/MySQL; SQLite and other
    drivers fetch in batches), inside a READ ONLY transaction where the database has one. On
    PostgreSQL, when every column's type survives it, rows travel instead as
    ``COPY (...) TO STDOUT (FORMAT csv)`` parsed by Arrow, which is faster; both ways give the
    same frames.

    Column dtypes follow the database types, the same in every chunk: integers ``Int64``,
    floating point ``Float64``, booleans ``boolean`` (all three nullable), text ``str`` (NULL
    is NaN, so NULL and ``""`` stay apart), ``DECIMAL``/``NUMERIC`` ``decimal.Decimal``
    objects, ``DATE`` ``datetime.date`` objects, ``TIMESTAMP`` ``datetime64[us]`` and
    ``TIMESTAMP WITH TIME ZONE`` (MariaDB ``TIMESTAMP``) ``datetime64[us, UTC]``; anything else
    (JSON, arrays, intervals, bytes) the driver's Python objects. Where a driver gives no types
    (SQLite), the first chunk holding values decides each column's dtype.
    """

    kind = "sql"

    def __init__(
        self,
        config: SqlSourceConfig,
        *,
        engine: Engine | None = None,
        watermark: Any = None,
        required_columns: Collection[str] | None = None,
    ) -> None:
        super().__init__()
        self.config = config
        self.watermark = watermark
        self.required_columns = list(required_columns) if required_columns else None
        self._engine = engine
        self._own_engine = engine is None
        self._password: str | None = None
        self._relation = ""
        self._cursor_kind: Kind | None = None
        self.method_used: str | None = None

    # Connection -----------------------------------------------------------------------------

    def _open(self) -> None:
        if self._engine is None:
            self._engine = self._create_engine()
        url = self._engine.url
        self._password = url.password if isinstance(url.password, str) else None

    def _close(self) -> None:
        if self._own_engine and self._engine is not None:
            self._engine.dispose()
            self._engine = None

    def _create_engine(self) -> Engine:
        import sqlalchemy as sa

        raw = self.config.url
        if self.config.url_env:
            raw = os.environ.get(self.config.url_env)
            if not raw:
                raise ConfigError(
                    f"{self.describe()}: environment variable {self.config.url_env} is not set; "
                    "it must hold the database URL"
                )
        if raw is None:
            raise ConfigError(
                f"{self.describe()}: no database URL; inside Airflow build the source with "
                "grip.airflow.sources, which makes the engine from the connection id"
            )
        try:
            return sa.create_engine(raw, pool_pre_ping=True)
        except (sa.exc.ArgumentError, sa.exc.NoSuchModuleError, ImportError) as err:
            raise ConfigError(
                f"{self.describe()}: the database URL cannot be used ({_first_line(err)})"
            ) from None

    @property
    def dialect(self) -> str:
        if self._engine is not None:
            return str(self._engine.dialect.name)
        url = self.config.url or ""
        return url.split(":", 1)[0].split("+", 1)[0] or "database"

    def describe(self) -> str:
        dialect = {"postgresql": "postgres", "mysql": "mysql", "mariadb": "mariadb"}.get(
            self.dialect, self.dialect
        )
        what = (
            f"table {self.config.schema_ + '.' if self.config.schema_ else ''}{self.config.table}"
            if self.config.table
            else "query"
        )
        if self.config.conn_id:
            where = f"via conn {self.config.conn_id}"
        elif self._engine is not None:
            where = f"at {self._engine.url.render_as_string(hide_password=True)}"
        elif self.config.url_env:
            where = f"at the URL in ${self.config.url_env}"
        else:
            where = f"at {_hide_url_password(self.config.url or '')}"
        return f"{dialect} {what} {where}"

    def _reason(self, err: BaseException) -> str:
        """The driver's own words about a failure, first line only, never a password."""
        orig = getattr(err, "orig", None) or err
        text = _first_line(orig)
        if self._password:
            text = text.replace(self._password, "***")
        return _SECRET_IN_TEXT.sub(r"\1=***", text)

    # Reading --------------------------------------------------------------------------------

    def _chunks(self) -> Iterator[pd.DataFrame]:
        import sqlalchemy as sa

        assert self._engine is not None
        try:
            conn = self._engine.connect()
        except sa.exc.DBAPIError as err:
            raise SourceError(
                f"{self.describe()}: cannot connect to the database ({self._reason(err)})"
            ) from None
        finished = False
        restore: list[str] = []
        frames: Generator[pd.DataFrame] | None = None
        try:
            restore = self._begin_read_only(conn)
            names, type_codes, kinds = self._columns(conn)
            method = self._choose_method(kinds, type_codes, names)
            self.method_used = method
            logger.info("%s: reading by %s", self.describe(), method)
            frames = (
                self._copy_frames(conn, names, kinds)
                if method == "copy"
                else self._cursor_frames(conn, names, kinds)
            )
            start = 1
            for frame in frames:
                frame.index = _row_index(start, len(frame))
                start += len(frame)
                self._track_watermark(frame)
                yield frame
            finished = True
        except sa.exc.DBAPIError as err:
            raise SourceError(f"{self.describe()}: the read failed ({self._reason(err)})") from None
        finally:
            if not finished and self.dialect in ("mysql", "mariadb"):
                _abandon_unbuffered_result(conn)
            if frames is not None:
                with contextlib.suppress(Exception):
                    frames.close()
            self._end(conn, restore, finished)

    def _end(self, conn: Connection, restore: list[str], finished: bool) -> None:
        """End the read-only transaction and undo session settings, or drop the connection."""
        try:
            if not conn.invalidated:
                conn.rollback()
                for statement in restore:
                    conn.exec_driver_sql(statement)
                conn.commit()
        except Exception:
            logger.debug("%s: the connection is dropped after a failure", self.describe())
            conn.invalidate()
        finally:
            conn.close()

    def _begin_read_only(self, conn: Connection) -> list[str]:
        """Start a READ ONLY transaction; return the statements that undo session changes."""
        dialect = self.dialect
        if dialect == "postgresql":
            conn.exec_driver_sql("SET TRANSACTION READ ONLY")
            conn.exec_driver_sql("SET LOCAL TimeZone = 'UTC'")
            conn.exec_driver_sql("SET LOCAL DateStyle = 'ISO, YMD'")
            conn.exec_driver_sql("SET LOCAL extra_float_digits = 1")
            return []
        if dialect in ("mysql", "mariadb"):
            zone, timeout = conn.exec_driver_sql(
                "SELECT @@session.time_zone, @@session.net_write_timeout"
            ).one()
            conn.exec_driver_sql("SET SESSION time_zone = '+00:00'")
            # NOTE: the caller works on each chunk while the unbuffered result stays open;
            # the server's default of 60 s without a read would cut the result short.
            conn.exec_driver_sql(f"SET SESSION net_write_timeout = {_MYSQL_NET_WRITE_TIMEOUT}")
            conn.exec_driver_sql("START TRANSACTION READ ONLY")
            return [
                f"SET SESSION time_zone = '{zone}'",
                f"SET SESSION net_write_timeout = {int(timeout)}",
            ]
        if dialect == "sqlite":
            conn.exec_driver_sql("PRAGMA query_only = ON")
            return ["PRAGMA query_only = OFF"]
        # TODO: SQL Server has no READ ONLY transaction; the connection's login should only
        # be granted SELECT (docs/sources.md says so). Safe because the source only selects.
        logger.debug("%s: %s has no read-only transaction", self.describe(), dialect)
        return []

    def _relation_sql(self, conn: Connection) -> str:
        quote = conn.dialect.identifier_preparer.quote
        if self.config.query is not None:
            query = self.config.query.strip().rstrip(";")
            return f"({query}) AS grip_source"
        import sqlalchemy as sa

        table = self.config.table
        assert table is not None
        inspector = sa.inspect(conn)
        if not inspector.has_table(table, schema=self.config.schema_):
            present = sorted(inspector.get_table_names(schema=self.config.schema_))
            listed = ", ".join(present[:30]) + (" ..." if len(present) > 30 else "")
            raise SourceError(
                f"{self.describe()}: table {table!r} does not exist"
                + (f" in schema {self.config.schema_!r}" if self.config.schema_ else "")
                + f"; the tables there are: {listed or 'none'}"
            )
        name = quote(table)
        return f"{quote(self.config.schema_)}.{name}" if self.config.schema_ else name

    def _columns(self, conn: Connection) -> tuple[list[str], list[Any], list[Kind | None]]:
        self._relation = self._relation_sql(conn)
        # no_parameters: the driver must not read a % in the partner's query as a placeholder.
        result = conn.execution_options(no_parameters=True).exec_driver_sql(
            f"SELECT * FROM {self._relation} WHERE 1 = 0"
        )
        try:
            description = result.cursor.description or []
            names = [str(d[0]) for d in description]
            kinds = [self._kind(d, position, result) for position, d in enumerate(description)]
            type_codes = [d[1] for d in description]
        finally:
            result.close()

        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise SourceError(
                f"{self.describe()}: the query returns column(s) "
                f"{', '.join(repr(d) for d in duplicates)} more than once; give each its own "
                "name with AS"
            )
        check_required_columns(self.describe(), names, self.required_columns)
        cursor = self.config.cursor_column
        self._cursor_kind = kinds[names.index(cursor)] if cursor in names else None
        if cursor is not None and cursor not in names:
            raise SourceError(
                f"{self.describe()}: the cursor column {cursor!r} is not among the columns "
                f"{', '.join(repr(n) for n in names)}"
            )
        return names, type_codes, kinds

    def _kind(self, description: Sequence[Any], position: int, result: Any) -> Kind | None:
        type_code = description[1]
        if self.dialect == "postgresql" and isinstance(type_code, int):
            return _PG_KINDS.get(type_code, "object")
        if self.dialect in ("mysql", "mariadb") and isinstance(type_code, int):
            if type_code == 1:  # TINY: TINYINT(1) is how MySQL writes BOOLEAN
                return "bool" if description[3] == 1 else "int"
            if type_code in _MYSQL_INT:
                return "int"
            if type_code in _MYSQL_TEXT:
                fields = getattr(getattr(result.cursor, "_result", None), "fields", None)
                if fields and position < len(fields):
                    charset = getattr(fields[position], "charsetnr", None)
                    return "object" if charset == _MYSQL_BINARY_CHARSET else "str"
                return None
            return _MYSQL_KINDS.get(type_code, "object")
        if isinstance(type_code, type):
            return next((k for t, k in _PYTHON_KINDS.items() if issubclass(type_code, t)), None)
        return None

    def _choose_method(
        self, kinds: list[Kind | None], type_codes: list[Any], names: list[str]
    ) -> str:
        method = self.config.method
        if self.dialect != "postgresql":
            if method == "copy":
                raise SourceError(
                    f"{self.describe()}: method copy needs PostgreSQL; use auto or cursor"
                )
            return "cursor"
        if method == "cursor":
            return "cursor"
        blocking = [
            f"{name} (type oid {code})"
            for name, code, kind in zip(names, type_codes, kinds, strict=True)
            if kind in (None, "object")
        ]
        driver = self._engine.dialect.driver if self._engine is not None else ""
        if driver not in ("psycopg2", "psycopg"):
            blocking.append(f"driver {driver}")
        if not blocking:
            return "copy"
        if method == "copy":
            raise SourceError(
                f"{self.describe()}: method copy cannot carry {', '.join(blocking)} unchanged; "
                "use method auto or cursor, or cast those columns to text in a query"
            )
        logger.debug("%s: COPY is not used because of %s", self.describe(), ", ".join(blocking))
        return "cursor"

    def _select_sql(self, conn: Connection) -> tuple[str, Any]:
        """The SELECT to run, with the watermark bound in the driver's own parameter style."""
        sql = f"SELECT * FROM {self._relation}"
        params: Any = None
        cursor = self.config.cursor_column
        if cursor is not None:
            quoted = conn.dialect.identifier_preparer.quote(cursor)
            if self.watermark is not None:
                style = conn.dialect.paramstyle
                value = self._watermark_param()
                if style in ("pyformat", "format"):
                    sql = sql.replace("%", "%%")  # a literal % in the query, now that % binds
                placeholder, params = {
                    "pyformat": ("%(watermark)s", {"watermark": value}),
                    "format": ("%s", (value,)),
                    "qmark": ("?", (value,)),
                    "named": (":watermark", {"watermark": value}),
                    "numeric": (":1", (value,)),
                }[style]
                # NOTE: ">=" reads rows equal to the watermark again: a row committed late with
                # the same cursor value is not lost, and the plan finds the others unchanged.
                sql += f" WHERE {quoted} >= {placeholder}"
            sql += f" ORDER BY {quoted}"
        return sql, params

    def _watermark_param(self) -> Any:
        """The watermark as the cursor column's type (a ledger may give it back as text)."""
        value = self.watermark
        kind = self._cursor_kind
        if isinstance(value, str):
            parse: dict[str, Any] = {
                "datetime": dt.datetime.fromisoformat,
                "datetime_tz": dt.datetime.fromisoformat,
                "date": dt.date.fromisoformat,
                "int": int,
                "float": float,
                "decimal": decimal.Decimal,
            }
            if kind in parse:
                try:
                    value = parse[kind](value)
                except (ValueError, ArithmeticError):
                    raise SourceError(
                        f"{self.describe()}: the watermark {value!r} is not a value of the "
                        f"cursor column {self.config.cursor_column!r} ({kind})"
                    ) from None
        if isinstance(value, dt.datetime) and value.tzinfo is None and kind == "datetime_tz":
            value = value.replace(tzinfo=dt.UTC)
        if isinstance(value, dt.datetime) and value.tzinfo is not None:
            if self.dialect in ("mysql", "mariadb"):
                return value.astimezone(dt.UTC).replace(tzinfo=None)
            if self.dialect == "sqlite":
                return value.isoformat(sep=" ")
        return value

    def _cursor_frames(
        self, conn: Connection, names: list[str], kinds: list[Kind | None]
    ) -> Generator[pd.DataFrame]:
        sql, params = self._select_sql(conn)
        size = self.config.chunk_size
        streaming = conn.execution_options(
            stream_results=True, yield_per=size, no_parameters=params is None
        )
        result = streaming.exec_driver_sql(sql, params)
        try:
            for rows in result.partitions(size):
                yield _rows_to_frame(rows, names, kinds, self.describe())
        finally:
            result.close()

    def _copy_frames(
        self, conn: Connection, names: list[str], kinds: list[Kind | None]
    ) -> Generator[pd.DataFrame]:
        import pyarrow as pa

        sql, params = self._select_sql(conn)
        raw = conn.connection.driver_connection
        if params:
            sql = _mogrify(raw, sql, params)
        copy_sql = f"COPY ({sql}) TO STDOUT WITH (FORMAT csv)"
        pending: list[pa.RecordBatch] = []
        pending_rows = 0
        size = self.config.chunk_size
        for batch in _copy_batches(raw, copy_sql, kinds, self.describe(), self._reason):
            pending.append(batch)
            pending_rows += batch.num_rows
            while pending_rows >= size:
                table = pa.Table.from_batches(pending)
                yield _arrow_to_frame(table.slice(0, size), names, kinds)
                rest = table.slice(size)
                pending = rest.to_batches()
                pending_rows = rest.num_rows
        if pending_rows:
            yield _arrow_to_frame(pa.Table.from_batches(pending), names, kinds)

    def _track_watermark(self, frame: pd.DataFrame) -> None:
        cursor = self.config.cursor_column
        if cursor is None or frame.empty:
            return
        values = frame[cursor].dropna()
        if values.empty:
            return
        highest = _python_value(values.max())
        if self.new_watermark is None or highest > self.new_watermark:
            self.new_watermark = highest


# Turning rows into frames -------------------------------------------------------------------


def _row_index(start: int, length: int) -> pd.RangeIndex:
    import pandas as pd

    return pd.RangeIndex(start, start + length, name=ROW_INDEX_NAME)


def _infer_kind(values: Sequence[Any]) -> Kind | None:
    types = {type(v) for v in values if v is not None}
    if not types:
        return None
    if types == {bool}:
        return "bool"
    if types == {int}:
        return "int"
    if types <= {int, float}:
        return "float"
    if types == {decimal.Decimal}:
        return "decimal"
    if types == {str}:
        return "str"
    if all(issubclass(t, dt.datetime) for t in types):
        aware = {v.tzinfo is not None for v in values if v is not None}
        return "datetime_tz" if aware == {True} else "datetime" if aware == {False} else "object"
    if all(issubclass(t, dt.date) and not issubclass(t, dt.datetime) for t in types):
        return "date"
    return "object"


_ARROW_TYPES: dict[str, Any] = {}


def _arrow_type(kind: Kind) -> Any:
    import pyarrow as pa

    if not _ARROW_TYPES:
        _ARROW_TYPES.update(
            int=pa.int64(),
            float=pa.float64(),
            bool=pa.bool_(),
            str=pa.string(),
            datetime=pa.timestamp("us"),
            datetime_tz=pa.timestamp("us", tz="UTC"),
            date=pa.date32(),
        )
    return _ARROW_TYPES.get(kind)


def _to_arrow(values: Sequence[Any], kind: Kind) -> Any:
    import pyarrow as pa

    if kind == "bool":
        values = [None if v is None else bool(v) for v in values]
    try:
        return pa.array(values, type=_arrow_type(kind))
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError, OverflowError):
        if kind == "str":
            return pa.array([None if v is None else str(v) for v in values], type=pa.string())
        if kind == "float":
            return pa.array([None if v is None else float(v) for v in values], pa.float64())
        raise


def _rows_to_frame(
    rows: Sequence[Sequence[Any]], names: list[str], kinds: list[Kind | None], where: str
) -> pd.DataFrame:
    import pandas as pd
    import pyarrow as pa

    columns = list(zip(*rows, strict=True)) if rows else [() for _ in names]
    arrow: dict[str, Any] = {}
    objects: dict[str, Any] = {}
    for position, (name, values) in enumerate(zip(names, columns, strict=True)):
        kind = kinds[position]
        if kind is None:
            kind = _infer_kind(values)
            if kind is not None:
                kinds[position] = kind
        if kind in (None, "object", "decimal", "date"):
            objects[name] = values
            continue
        try:
            arrow[name] = _to_arrow(values, kind)
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError, OverflowError) as err:
            logger.warning(
                "%s: column %s holds values that are not %s (%s); it is read as objects",
                where,
                name,
                kind,
                err,
            )
            kinds[position] = "object"
            objects[name] = values
    frame = _arrow_table_to_pandas(pa.table(arrow) if arrow else None, len(rows))
    for position, name in enumerate(names):
        if name in objects:
            frame.insert(position, name, pd.Series(objects[name], dtype=object, index=frame.index))
    frame.attrs[SOURCE_FILE_ATTR] = None
    return frame


def _arrow_table_to_pandas(table: pa.Table | None, length: int) -> pd.DataFrame:
    import pandas as pd
    import pyarrow as pa

    if table is None:
        return pd.DataFrame(index=pd.RangeIndex(length))
    mapping = {
        pa.int64(): pd.Int64Dtype(),
        pa.float64(): pd.Float64Dtype(),
        pa.bool_(): pd.BooleanDtype(),
    }
    return table.to_pandas(types_mapper=mapping.get)


def _arrow_to_frame(table: pa.Table, names: list[str], kinds: list[Kind | None]) -> pd.DataFrame:
    import pandas as pd

    # NOTE: one chunk per column (the COPY blocks arrive as many): later row selections are
    # then a plain take instead of one over dozens of chunks, in the planning thread
    table = table.rename_columns(names).combine_chunks()
    decimals = [name for name, kind in zip(names, kinds, strict=True) if kind == "decimal"]
    frame = _arrow_table_to_pandas(table.drop_columns(decimals), table.num_rows)
    for name in decimals:
        values = table.column(name).to_pylist()
        converted = [None if v is None else decimal.Decimal(v) for v in values]
        frame.insert(names.index(name), name, pd.Series(converted, dtype=object))
    frame.attrs[SOURCE_FILE_ATTR] = None
    return frame


def _python_value(value: Any) -> Any:
    to_python = getattr(value, "to_pydatetime", None)
    if to_python is not None:
        return to_python()
    item = getattr(value, "item", None)
    return item() if item is not None else value


# PostgreSQL COPY ------------------------------------------------------------------------------


def _record_end(data: bytes) -> int:
    """Where the last complete CSV record of ``data`` ends (0 if none does).

    A line break ends a record unless it sits inside a quoted value, that is after an odd
    number of quote characters (PostgreSQL quotes every value holding a quote or line break).
    """
    position = data.rfind(b"\n")
    while position != -1:
        if data.count(b'"', 0, position) % 2 == 0:
            return position + 1
        position = data.rfind(b"\n", 0, position)
    return 0


def _copy_batches(
    raw: Any,
    copy_sql: str,
    kinds: list[Kind | None],
    where: str,
    reason: Callable[[BaseException], str],
) -> Iterator[Any]:
    """Run COPY on a thread; parse its CSV with Arrow, block by block, as it arrives.

    Memory stays bounded whatever the size of the table: COPY writes into a pipe whose ends
    buffer about 1 MiB each, and the thread waits while the pipe is full.
    """
    import pyarrow as pa
    import pyarrow.csv as pacsv

    positional = [f"c{i}" for i in range(len(kinds))]
    read_options = pacsv.ReadOptions(column_names=positional, use_threads=False)
    parse_options = pacsv.ParseOptions(newlines_in_values=True)
    convert_options = pacsv.ConvertOptions(
        column_types={
            name: _arrow_type("str" if kind == "decimal" else kind)  # type: ignore[arg-type]
            for name, kind in zip(positional, kinds, strict=True)
        },
        null_values=[""],
        strings_can_be_null=True,
        quoted_strings_can_be_null=False,
        true_values=["t"],
        false_values=["f"],
        check_utf8=not sends_valid_utf8(raw),
    )

    def parse(data: bytes) -> Any:
        try:
            return pacsv.read_csv(
                pa.py_buffer(data),
                read_options=read_options,
                parse_options=parse_options,
                convert_options=convert_options,
            )
        except pa.ArrowInvalid as err:
            raise SourceError(
                f"{where}: a value could not be read from COPY ({err}); use method: cursor for "
                "this source"
            ) from None

    with CopyReader(raw, copy_sql) as copy:
        carry = b""
        while block := copy.file.read(COPY_BLOCK):
            data = carry + block if carry else block
            cut = _record_end(data)
            carry = data[cut:]
            if cut:
                yield from parse(data[:cut]).to_batches()
        try:
            copy.check()
        except Exception as err:
            raise SourceError(f"{where}: the read failed ({reason(err)})") from None
        if carry:
            yield from parse(carry).to_batches()


def _abandon_unbuffered_result(conn: Connection) -> None:
    """Drop a MySQL connection whose unbuffered result was not read to its end.

    MySQL cannot stop a result once sent: closing the cursor would read every remaining row.
    The connection is dropped instead, after telling PyMySQL the result is done with, so that
    nothing tries to read from the closed socket later.
    """
    with contextlib.suppress(Exception):
        result = getattr(conn.connection.driver_connection, "_result", None)
        if result is not None and getattr(result, "unbuffered_active", False):
            result.unbuffered_active = False
    conn.invalidate()


def _mogrify(raw: Any, sql: str, params: dict[str, Any]) -> str:
    """Bind parameters into SQL text for COPY, which cannot take them, with the driver's quoting."""
    if is_psycopg2(raw):
        with raw.cursor() as cursor:
            return str(cursor.mogrify(sql, params).decode())
    import psycopg

    return str(psycopg.ClientCursor(raw).mogrify(sql, params))


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0].strip() if text else type(err).__name__


def _hide_url_password(url: str) -> str:
    return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", url)
