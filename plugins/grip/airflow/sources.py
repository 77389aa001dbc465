"""Sources inside Airflow: engines and SFTP clients made from Airflow connections."""

from __future__ import annotations

import logging
from collections.abc import Collection
from pathlib import Path
from typing import TYPE_CHECKING, Any

from grip.errors import ConfigError, SourceError
from grip.sources import (
    FileSourceConfig,
    SftpSourceConfig,
    Source,
    SourceConfig,
    SourceFile,
    SqlSourceConfig,
    build_source,
)

if TYPE_CHECKING:
    import paramiko
    from sqlalchemy.engine import Engine

logger = logging.getLogger(__name__)

# A driver measured faster than the provider's default (psycopg 3) for both the cursor and the
# COPY path (bench/sources_postgres.py); a connection extra "sqlalchemy_scheme" still wins.
_POSTGRES_SCHEME = "postgresql+psycopg2"


def build_source_from_airflow(
    config: SourceConfig,
    *,
    base_dir: Path | None = None,
    processed: Collection[SourceFile] | Collection[str] = (),
    watermark: Any = None,
    required_columns: Collection[str] | None = None,
) -> Source:
    """Build a source, reaching databases and SFTP servers through Airflow connections.

    A SQL source with ``conn_id`` gets an engine made by the connection's provider hook, an
    SFTP source with ``conn_id`` a client from ``SFTPHook`` (host key checking on); both are
    released when the source closes. Sources without ``conn_id`` are built as outside Airflow.

    Args:
        config: The ``source:`` block of a data type in an integration file.
        base_dir: Folder against which a relative local path is resolved.
        processed: Files the ledger already holds (see :func:`grip.sources.build_source`).
        watermark: For an incremental SQL read, the largest cursor value of the last run.
        required_columns: Columns the mapping reads.

    Raises:
        SourceError: The connection id is not defined, or its type has no usable hook.
    """
    common: dict[str, Any] = {
        "base_dir": base_dir,
        "processed": processed,
        "watermark": watermark,
        "required_columns": required_columns,
    }
    if isinstance(config, SqlSourceConfig) and config.conn_id:
        engine = sql_engine(config.conn_id)
        source = build_source(config, engine=engine, **common)
        source.on_close(engine.dispose)
        return source
    if isinstance(config, SftpSourceConfig) and config.conn_id:
        hook = sftp_hook(config.conn_id)

        def open_client() -> paramiko.SFTPClient:
            return hook.get_conn()

        source = build_source(config, sftp_client=open_client, **common)
        source.on_close(lambda: _close_hook(hook))
        return source
    if isinstance(config, FileSourceConfig | SqlSourceConfig | SftpSourceConfig):
        return build_source(config, **common)
    raise ConfigError(f"unknown source settings {type(config).__name__}")  # pragma: no cover


def _connection(conn_id: str) -> Any:
    from airflow.sdk import BaseHook
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        return BaseHook.get_connection(conn_id)
    except AirflowNotFoundException:
        raise SourceError(
            f"connection id {conn_id!r} is not defined in Airflow; add it under Admin > "
            "Connections or as AIRFLOW_CONN_" + conn_id.upper()
        ) from None


def sql_engine(conn_id: str) -> Engine:
    """A SQLAlchemy engine for an Airflow database connection, made by its provider hook.

    PostgreSQL goes through ``PostgresHook`` (psycopg2 unless the connection's extra names
    another ``sqlalchemy_scheme``); MySQL and MariaDB through a ``mysql+pymysql`` URL built from
    the connection (the MySQL provider needs mysqlclient, which needs C headers); SQLite through
    the file named in the connection's host; any other type through its provider's hook
    (``conn.get_hook().get_sqlalchemy_engine()``, e.g. ``mssql`` with
    apache-airflow-providers-microsoft-mssql).
    """
    import sqlalchemy as sa

    conn = _connection(conn_id)
    conn_type = (conn.conn_type or "").lower()
    extra = conn.extra_dejson or {}
    try:
        if conn_type in ("postgres", "postgresql"):
            from airflow.providers.postgres.hooks.postgres import PostgresHook

            scheme = extra.get("sqlalchemy_scheme") or _POSTGRES_SCHEME
            hook = PostgresHook(postgres_conn_id=conn_id, sqlalchemy_scheme=scheme)
            return hook.get_sqlalchemy_engine(engine_kwargs={"pool_pre_ping": True})
        if conn_type in ("mysql", "mariadb"):
            url = sa.URL.create(
                "mysql+pymysql",
                username=conn.login or None,
                password=conn.password or None,
                host=conn.host or "localhost",
                port=int(conn.port) if conn.port else None,
                database=conn.schema or None,
                query={"charset": str(extra.get("charset", "utf8mb4"))},
            )
            return sa.create_engine(url, pool_pre_ping=True)
        if conn_type == "sqlite":
            return sa.create_engine(f"sqlite:///{conn.host}")
        hook = conn.get_hook()
    except SourceError:
        raise
    except Exception as err:
        raise SourceError(
            f"connection id {conn_id!r} ({conn_type}): no database engine can be made from it "
            f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''})"
        ) from None
    make = getattr(hook, "get_sqlalchemy_engine", None)
    if make is None:
        raise SourceError(
            f"connection id {conn_id!r} has type {conn_type!r}, whose hook gives no SQLAlchemy "
            "engine; use a database connection type"
        )
    return make()


def sftp_hook(conn_id: str) -> Any:
    """An ``SFTPHook`` for the connection, host key checking on.

    The provider checks the key given as ``host_key`` in the connection's extra, or else the
    keys of ``~/.ssh/known_hosts``; grip-sync also honours ``known_hosts`` in the extra (a path
    to a known_hosts file), taking the server's key from it.
    """
    from airflow.providers.sftp.hooks.sftp import SFTPHook

    conn = _connection(conn_id)
    try:
        # NOTE: one attempt; a task's own retries handle a network that is briefly down.
        hook = SFTPHook(ssh_conn_id=conn_id, conn_retry_attempts=1)
    except Exception as err:
        raise SourceError(
            f"connection id {conn_id!r}: its settings cannot be used ({type(err).__name__}: "
            f"{str(err).splitlines()[0] if str(err) else ''})"
        ) from None
    if hook.no_host_key_check:
        logger.warning(
            "SFTP connection %s turns host key checking off (no_host_key_check); anyone "
            "between here and the server could read the partner's files",
            conn_id,
        )
    known_hosts = (conn.extra_dejson or {}).get("known_hosts")
    if known_hosts and hook.host_key is None and not hook.no_host_key_check:
        hook.host_key = _key_from_known_hosts(
            conn_id, known_hosts, hook.remote_host, int(hook.port or 22)
        )
    return hook


def _key_from_known_hosts(conn_id: str, path: str, host: str, port: int) -> Any:
    import paramiko

    from grip.sources.sftp import parse_host_key

    file = Path(path).expanduser()
    if not file.is_file():
        # The extra may hold the file's lines themselves rather than a path.
        if "ssh-" in path or "ecdsa-" in path:
            lines = [line for line in path.splitlines() if line.strip()]
            return parse_host_key(lines[0], f"connection id {conn_id!r}")
        raise SourceError(f"connection id {conn_id!r}: known_hosts file {file} does not exist")
    keys = paramiko.HostKeys(str(file))
    entry = host if port == 22 else f"[{host}]:{port}"
    found = keys.lookup(entry)
    if not found:
        raise SourceError(
            f"connection id {conn_id!r}: {entry} is not in known_hosts file {file}; add the "
            "server's key there or give it as host_key"
        )
    return next(iter(found.values()))


def _close_hook(hook: Any) -> None:
    try:
        hook.close_conn()
    finally:
        client = getattr(hook, "client", None)
        if client is not None:
            client.close()
            hook.client = None
