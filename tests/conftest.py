"""The test harness: real local services, each started once per test session where it is costly.

Every service-backed fixture skips its tests with a loud reason on a laptop that lacks the service
and fails them under ``CI=true``.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness.services import scratch_database, unavailable
from tests.harness.sshd import SshServer, start_sshd

ROOT = Path(__file__).resolve().parent.parent

# The sandbox and the real-Airflow stack: fixtures (and a report hook) of their own modules.
pytest_plugins = ["tests.harness.sandbox", "tests.harness.airflow"]

# Airflow reads its configuration once, at first import: point it at a throw-away home before
# any test module can import it, so that no test ever touches ~/airflow.
_AIRFLOW_HOME = Path(tempfile.mkdtemp(prefix="grip-airflow-home-"))
os.environ["AIRFLOW_HOME"] = str(_AIRFLOW_HOME)
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(ROOT / "dags")
os.environ["AIRFLOW__CORE__PLUGINS_FOLDER"] = str(ROOT / "plugins")
os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = f"sqlite:///{_AIRFLOW_HOME / 'airflow.db'}"
os.environ.setdefault("AIRFLOW__CORE__EXECUTION_API_SERVER_URL", "http://127.0.0.1:1/execution/")
# Runs write their work files and reports here, never into the checkout.
os.environ["GRIP_WORK_DIR"] = str(_AIRFLOW_HOME / "grip-work")
os.environ["GRIP_REPORT_DIR"] = str(_AIRFLOW_HOME / "grip-reports")

PG_ADMIN_URL = os.environ.get(
    "GRIP_TEST_PG_ADMIN_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"
)
MARIADB_ADMIN_URL = os.environ.get(
    "GRIP_TEST_MARIADB_ADMIN_URL", "mysql+pymysql://root@127.0.0.1:3306/?charset=utf8mb4"
)


def _scratch_name(prefix: str) -> str:
    return f"{prefix}_{os.getpid()}_{secrets.token_hex(3)}"


@pytest.fixture(scope="session")
def airflow_home() -> Path:
    """A throw-away AIRFLOW_HOME whose SQLite metadata database is migrated, once a session."""
    result = subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"],
        env=os.environ.copy(),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if result.returncode != 0:
        unavailable("Airflow metadata database", result.stderr[-2000:])
    return _AIRFLOW_HOME


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL database on the local server, dropped after the session.

    Set ``GRIP_TEST_PG_URL`` to use an existing database instead, or ``GRIP_TEST_PG_ADMIN_URL``
    to create the scratch database on another server.
    """
    if given := os.environ.get("GRIP_TEST_PG_URL"):
        yield given
        return
    yield from scratch_database(
        PG_ADMIN_URL, _scratch_name("grip_test"), create_sql="CREATE DATABASE {name}"
    )


@pytest.fixture(scope="session")
def mariadb_url() -> Iterator[str]:
    """A fresh MariaDB database (utf8mb4) on the local server, dropped after the session.

    Set ``GRIP_TEST_MARIADB_URL`` to use an existing database instead, or
    ``GRIP_TEST_MARIADB_ADMIN_URL`` to create the scratch database on another server.
    """
    if given := os.environ.get("GRIP_TEST_MARIADB_URL"):
        yield given
        return
    for url in scratch_database(
        MARIADB_ADMIN_URL,
        _scratch_name("grip_test"),
        create_sql="CREATE DATABASE {name} CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci",
    ):
        yield url if "charset=" in url else f"{url}?charset=utf8mb4"


@pytest.fixture(scope="session")
def sshd() -> Iterator[SshServer]:
    """An OpenSSH sshd on a free loopback port with a throw-away user, keys and upload folder."""
    yield from start_sshd()
