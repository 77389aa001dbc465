"""Reaching the real local services the tests need, and what to do when one is missing."""

from __future__ import annotations

import os
import socket
import warnings
from collections.abc import Iterator
from contextlib import closing

import pytest


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def unavailable(service: str, reason: str) -> None:
    """Skip loudly on a laptop, fail under CI=true: a missing service is never a silent pass."""
    message = f"{service} is not available: {reason}"
    if in_ci():
        pytest.fail(f"{message} (CI=true: every service must run)", pytrace=False)
    warnings.warn(f"SKIPPING tests that need {message}", stacklevel=2)
    pytest.skip(f"SKIPPED, {message}")


def free_port() -> int:
    with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_open(host: str, port: int, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def scratch_database(admin_url: str, name: str, *, create_sql: str) -> Iterator[str]:
    """Create database ``name`` on the server of ``admin_url``, yield its URL, drop it after."""
    import sqlalchemy as sa

    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name}")
            conn.exec_driver_sql(create_sql.format(name=name))
    except sa.exc.OperationalError as err:
        admin.dispose()
        unavailable(admin.url.render_as_string(hide_password=True), str(err.orig).strip())
    url = admin.url.set(database=name).render_as_string(hide_password=False)
    try:
        yield url
    finally:
        with admin.connect() as conn:
            if admin.dialect.name == "postgresql":
                conn.exec_driver_sql(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    f"WHERE datname = '{name}' AND pid <> pg_backend_pid()"
                )
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name}")
        admin.dispose()
