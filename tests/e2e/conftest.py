"""The e2e session's world: integration files, partner data, a ledger and the stack's settings."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.harness.services import scratch_database

if TYPE_CHECKING:
    import pandas as pd

    from tests.harness.airflow import StackConfig
    from tests.harness.sandbox import SandboxServer

ROOT = Path(__file__).resolve().parents[2]
DEMO_MAPPINGS = ROOT / "include" / "mappings" / "demo"
PG_ADMIN_URL = os.environ.get(
    "GRIP_TEST_PG_ADMIN_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"
)

PARTNER_CONN_ID = "e2e_partner_db"
LEDGER_CONN_ID = "grip_ledger"
GRIP_CONN_ID = "grip_default"
POOL_SLOTS = 4
BAD_SHARE = 0.06
MAX_REJECT_SHARE = 0.3
CHUNK_SIZE = 100


@dataclass(frozen=True)
class PartnerFeed:
    """What one e2e integration reads, and the same rows as the test sees them.

    Attributes:
        name: The integration's name (DAGs ``grip_<name>_onboarding`` and ``grip_<name>_sync``).
        prefix: What its registration ids start with; the other integration's never do.
        path: Its integration file.
        table: The partner PostgreSQL table of visitors.
        drop: The folder of the exhibitors' CSV drop.
        visitors: The visitor rows as the table returns them, row 1 first (heap order: the
            order a source reads them in, which is not always the insert order).
        exhibitors: The exhibitor rows as written to the CSV, row 1 first.
        sample_size: The integration file's sample size.
    """

    name: str
    prefix: str
    path: Path
    table: str
    drop: Path
    visitors: pd.DataFrame
    exhibitors: pd.DataFrame
    sample_size: int

    @property
    def onboarding_dag(self) -> str:
        return f"grip_{self.name}_onboarding"

    @property
    def sync_dag(self) -> str:
        return f"grip_{self.name}_sync"


@dataclass(frozen=True)
class E2EWorld:
    """Everything the e2e stack is configured with, for the tests to check against."""

    root: Path
    feeds: dict[str, PartnerFeed]
    partner_url: str
    ledger_url: str
    work_dir: Path
    report_dir: Path
    sandbox: SandboxServer


def _conn_json(url: str) -> str:
    """An Airflow ``postgres`` connection (JSON form) for a SQLAlchemy PostgreSQL URL."""
    import sqlalchemy as sa

    parsed = sa.make_url(url)
    fields = {
        "conn_type": "postgres",
        "host": parsed.host or "127.0.0.1",
        "port": parsed.port or 5432,
        "login": parsed.username or "postgres",
        "password": parsed.password or "",
        "schema": parsed.database,
    }
    return json.dumps(fields)


def _integration_file(name: str, table: str, sample_size: int) -> str:
    return textwrap.dedent(
        f"""\
        # e2e integration {name}: visitors from the partner PostgreSQL, exhibitors from a drop.
        name: {name}
        event: E2E Travel Expo ({name})
        application:
          languages: [en-gb, ru-ru]
          location_code: en-gb
          type_ids: {{visitor: 380, exhibitor: 381}}
          container_ids: [90001]
        data_types:
          visitor:
            mapping: ../mappings/visitor.yaml
            source:
              kind: sql
              conn_id: {PARTNER_CONN_ID}
              table: {table}
          exhibitor:
            mapping: ../mappings/exhibitor.yaml
            source:
              kind: file
              path: ../drops/{name}
              pattern: exhibitors_*.csv
        grip_conn_id: {GRIP_CONN_ID}
        ledger_conn_id: {LEDGER_CONN_ID}
        # no cron: the sync runs when the onboarding's go-live Asset updates, or when triggered
        schedule: null
        sample_size: {sample_size}
        limits:
          max_reject_share: {MAX_REJECT_SHARE}
          concurrency: 4
          chunk_size: {CHUNK_SIZE}
        """
    )


def _load_table(url: str, table: str, frame: pd.DataFrame) -> pd.DataFrame:
    """Write ``frame`` into a new table; return the table's rows in the order a scan reads them."""
    import pandas as pd
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            frame.to_sql(table, conn, index=False, if_exists="replace")
        with engine.connect() as conn:
            stored = pd.read_sql_query(sa.text(f"SELECT * FROM {table}"), conn)
    finally:
        engine.dispose()
    stored.index = pd.RangeIndex(1, len(stored) + 1, name="source_row")
    return stored


def _feed(
    root: Path, partner_url: str, name: str, *, prefix: str, seed: int, visitors: int, sample: int
) -> PartnerFeed:
    from bench.datagen import exhibitors as make_exhibitors
    from bench.datagen import visitors as make_visitors

    people = make_visitors(visitors, seed=seed, bad_share=BAD_SHARE)
    staff = make_exhibitors(visitors // 4, seed=seed + 1, bad_share=BAD_SHARE)
    # NOTE: both integrations push into one sandbox application; a prefix keeps their
    # registration ids apart (an id holding "admin" still holds it, and repeats still repeat)
    people["reg_id"] = prefix + people["reg_id"]
    staff["reg_id"] = prefix + staff["reg_id"]
    table = f"{name}_visitors"
    stored = _load_table(partner_url, table, people)
    drop = root / "drops" / name
    drop.mkdir(parents=True)
    staff.to_csv(drop / "exhibitors_20260301.csv", index=False)
    path = root / "integrations" / f"{name}.yaml"
    path.write_text(_integration_file(name, table, sample))
    return PartnerFeed(name, prefix, path, table, drop, stored, staff, sample)


@pytest.fixture(scope="session")
def e2e_ledger_url() -> Iterator[str]:
    """A scratch PostgreSQL database for the ledger of the e2e stack, dropped after the session."""
    name = f"grip_e2e_ledger_{os.getpid()}_{secrets.token_hex(3)}"
    yield from scratch_database(PG_ADMIN_URL, name, create_sql="CREATE DATABASE {name}")


@pytest.fixture(scope="session")
def e2e_world(
    tmp_path_factory: pytest.TempPathFactory,
    pg_url: str,
    e2e_ledger_url: str,
    sandbox_server: SandboxServer,
) -> E2EWorld:
    """Two integrations with their partner data in place, written before the stack starts.

    ``e2e_main`` (sample 20, ids prefixed ``M``) is onboarded and synced by the tests,
    ``e2e_reject`` (sample 15, ids prefixed ``RJ``) has its sample rejected. Each reads visitors
    (200 and 120, table ``<name>_visitors`` in the partner database) and a quarter as many
    exhibitors (a CSV drop); a share of the rows is bad in the ways partner exports are, so
    validation sets some aside.
    """
    root = tmp_path_factory.mktemp("e2e-include")
    (root / "integrations").mkdir()
    shutil.copytree(DEMO_MAPPINGS, root / "mappings")
    feeds = {
        "e2e_main": _feed(root, pg_url, "e2e_main", prefix="M", seed=7, visitors=200, sample=20),
        "e2e_reject": _feed(
            root, pg_url, "e2e_reject", prefix="RJ", seed=31, visitors=120, sample=15
        ),
    }
    work_dir = root / "work"
    report_dir = root / "reports"
    work_dir.mkdir()
    report_dir.mkdir()
    return E2EWorld(root, feeds, pg_url, e2e_ledger_url, work_dir, report_dir, sandbox_server)


@pytest.fixture(scope="session")
def airflow_stack_config(e2e_world: E2EWorld) -> StackConfig:
    """The session's stack, with the e2e integrations, their connections and the grip_api pool.

    The DAG files read the integration files when they are parsed, and the tasks read the
    partner data when they run: both are in place before the stack starts.
    """
    import dataclasses

    from tests.harness.airflow import default_config

    sandbox = e2e_world.sandbox
    grip = {"conn_type": "grip", "host": sandbox.base_url, "password": sandbox.token}
    return dataclasses.replace(
        default_config(),
        pools={"grip_api": POOL_SLOTS},
        connections={
            GRIP_CONN_ID: json.dumps(grip),
            LEDGER_CONN_ID: _conn_json(e2e_world.ledger_url),
            PARTNER_CONN_ID: _conn_json(e2e_world.partner_url),
        },
        extra_env={
            "GRIP_INTEGRATIONS_DIR": str(e2e_world.root / "integrations"),
            "GRIP_WORK_DIR": str(e2e_world.work_dir),
            "GRIP_REPORT_DIR": str(e2e_world.report_dir),
        },
    )
