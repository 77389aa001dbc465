"""Connecting to the ledger database and bringing its schema up to date."""

from __future__ import annotations

import logging
import os
import sqlite3
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import URL, Engine, make_url

from grip.errors import LedgerError

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
DEFAULT_LEDGER_FILE = Path("var") / "ledger.sqlite"
LEDGER_URL_ENV = "GRIP_LEDGER_URL"

# NOTE: a fixed key so that every process migrating the same PostgreSQL ledger queues on one lock.
_PG_LOCK_KEY = 0x67726970  # "grip"
_SQLITE_BUSY_SECONDS = 30


def default_ledger_url() -> str:
    """Return ``GRIP_LEDGER_URL`` if set, else a SQLite file ``var/ledger.sqlite`` in the cwd."""
    if given := os.environ.get(LEDGER_URL_ENV):
        return given
    return f"sqlite:///{DEFAULT_LEDGER_FILE.resolve()}"


def safe_url(url: str | URL) -> str:
    """Return a URL fit for logs and messages: the password is masked."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except sa.exc.ArgumentError:
        return "<unparsable URL>"


def create_ledger_engine(url: str | URL) -> Engine:
    """Create an engine for a ledger URL; a SQLite file's folder is created when missing.

    SQLite ledgers use WAL journaling and a busy timeout, so that a status command can read while
    a run writes.
    """
    try:
        parsed = make_url(url)
    except sa.exc.ArgumentError as err:
        raise LedgerError(
            f"ledger URL {url!r} is not a SQLAlchemy URL; write it like "
            "'postgresql+psycopg2://user@host/db' or 'sqlite:///var/ledger.sqlite'"
        ) from err
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(parsed, connect_args={"timeout": _SQLITE_BUSY_SECONDS})
        sa.event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return sa.create_engine(parsed, pool_pre_ping=True)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout={int(_SQLITE_BUSY_SECONDS * 1000)}")
        _enable_wal(cursor)
        cursor.execute("PRAGMA synchronous=NORMAL")
    finally:
        cursor.close()


def _enable_wal(cursor: Any) -> None:
    """Switch the file to WAL journaling, waiting while another connection holds it.

    SQLite answers ``database is locked`` at once, without its busy handler, when two
    connections switch a new file's journal mode at the same moment; so the switch is tried
    again until the busy timeout has passed.
    """
    deadline = time.monotonic() + _SQLITE_BUSY_SECONDS
    pause = 0.01
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
        except sqlite3.OperationalError as err:
            if "locked" not in str(err) or time.monotonic() >= deadline:
                raise
            time.sleep(pause)
            pause = min(pause * 2, 0.5)
        else:
            return


def upgrade(engine_or_url: Engine | str | URL, revision: str = "head") -> str:
    """Apply the ledger's migrations up to ``revision``; return the revision reached.

    Safe to call on every start: an up-to-date ledger is left as it is, and migrations only add
    to a ledger that already holds data. On PostgreSQL concurrent callers wait on an advisory
    lock and on SQLite for the file's write lock, so two workers starting at once do not race to
    create the same tables.

    Raises:
        LedgerError: the database cannot be reached or a migration fails.
    """
    from alembic import command
    from alembic.config import Config
    from alembic.runtime.migration import MigrationContext

    from grip.ledger.models import VERSION_TABLE

    owned = not isinstance(engine_or_url, Engine)
    engine = (
        engine_or_url if isinstance(engine_or_url, Engine) else create_ledger_engine(engine_or_url)
    )
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    try:
        with engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_PG_LOCK_KEY})")
            elif conn.dialect.name == "sqlite":
                # The write lock first, so that a second process migrating the same file waits
                # and then finds it up to date (instead of creating the same tables again).
                conn.exec_driver_sql("BEGIN IMMEDIATE")
            config.attributes["connection"] = conn
            command.upgrade(config, revision)
            reached = MigrationContext.configure(
                conn, opts={"version_table": VERSION_TABLE}
            ).get_current_revision()
    except sa.exc.SQLAlchemyError as err:
        where = safe_url(engine.url)
        raise LedgerError(f"cannot migrate the ledger at {where}: {err}") from err
    finally:
        if owned:
            engine.dispose()
    log.debug("ledger at %s is at revision %s", safe_url(engine.url), reached)
    return reached or ""
