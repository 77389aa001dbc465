"""The demo partner data: the same every time, bad exactly where meant, the same in PostgreSQL."""

from __future__ import annotations

import csv
import os
import secrets
from pathlib import Path

import pytest
import sqlalchemy as sa

from grip.config import load_integration
from grip.ledger import Ledger
from grip.sync import run_stage
from scripts import demo_data
from tests.harness.services import scratch_database

ROOT = Path(__file__).resolve().parents[2]
PG_ADMIN_URL = os.environ.get(
    "GRIP_TEST_PG_ADMIN_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"
)
SEED = ROOT / "include" / "demo" / "partner.sql"


@pytest.fixture(scope="module")
def data() -> demo_data.DemoData:
    return demo_data.build()


def test_every_build_makes_the_same_rows(data):
    again = demo_data.build()
    for data_type, frame in data.frames.items():
        assert frame.equals(again.frames[data_type]), data_type
    assert {name: len(frame) for name, frame in data.frames.items()} == demo_data.SIZES


def test_both_languages_and_the_planted_rows_are_there(data):
    visitors = data.frames["visitor"]
    assert visitors["first_name"].str.contains(r"[А-Яа-я]").any()
    assert visitors["first_name"].str.contains(r"^[A-Za-z]").any()
    assert visitors.loc[41, "reg_id"] == "V-ADMIN-41"
    assert len(demo_data.LONG_JOB_TITLE) > 140
    reps = data.frames["representative"]
    assert reps.loc[30, "reg_id"] == reps.loc[12, "reg_id"]
    assert {len(rows) for rows in data.bad.values()} == {4, 1, 2}
    assert len(data.all_valid_keys()) == 510 - 7 - 4


def test_written_files_hold_the_rows(tmp_path, data):
    paths = demo_data.write_demo(tmp_path, data)

    with sa.create_engine(f"sqlite:///{paths['sqlite']}").connect() as conn:
        rows = conn.exec_driver_sql("SELECT reg_id, is_test FROM visitors ORDER BY id").all()
    assert [r[0] for r in rows] == list(data.frames["visitor"]["reg_id"])
    assert {r[1] for r in rows} == {0, 1}

    with paths["representatives"].open(encoding="utf-8", newline="") as handle:
        reps = list(csv.DictReader(handle))
    assert [r["reg_id"] for r in reps] == list(data.frames["representative"]["reg_id"])
    assert paths["exhibitors"].name == f"exhibitors_{demo_data.DROP_DATE}.csv"
    assert paths["exhibitors"].stat().st_mode & 0o777 == 0o644


def test_committed_seed_of_the_docker_stack_is_what_the_generator_makes(tmp_path, data):
    stale = (
        "is stale: run python scripts/demo_data.py --postgres-seed include/demo/partner.sql "
        "and commit include/demo/partner.sql and var/demo/drop/"
    )
    assert SEED.read_text(encoding="utf-8") == demo_data.postgres_seed(data.frames["visitor"]), (
        f"include/demo/partner.sql {stale}"
    )
    for fresh in demo_data.write_drop(data, tmp_path):
        committed = ROOT / "var" / "demo" / "drop" / fresh.name
        assert committed.read_bytes() == fresh.read_bytes(), f"{committed} {stale}"


@pytest.fixture(scope="module")
def postgres_partner() -> str:
    name = f"grip_demo_seed_{os.getpid()}_{secrets.token_hex(3)}"
    for url in scratch_database(PG_ADMIN_URL, name, create_sql="CREATE DATABASE {name}"):
        engine = sa.create_engine(url)
        with engine.begin() as conn:
            conn.exec_driver_sql(SEED.read_text(encoding="utf-8"))
        engine.dispose()
        yield url


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.integration)])
def partner_url(request, tmp_path, data) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{demo_data.write_demo(tmp_path / 'demo', data)['sqlite']}"
    demo_data.write_drop(data, tmp_path / "demo" / "drop")
    return request.getfixturevalue("postgres_partner")


def test_validation_rejects_exactly_the_planted_rows(tmp_path, data, partner_url):
    demo_data.write_drop(data, tmp_path / "demo" / "drop")
    integration = load_integration(
        demo_data.integration_copy(tmp_path / "demo" / "drop", tmp_path / "integrations")
    )
    engine = sa.create_engine(partner_url)
    try:
        report = run_stage(
            integration,
            "full",
            dry_run=True,
            ledger=Ledger(f"sqlite:///{tmp_path / 'ledger.sqlite'}"),
            engine=engine,
            work_root=tmp_path / "work",
            report_root=tmp_path / "reports",
        )
    finally:
        engine.dispose()

    counts = report.counts
    assert counts["read"] == sum(demo_data.SIZES.values())
    assert counts["filtered"] == sum(len(rows) for rows in data.skipped.values())
    assert counts["to_push"] == len(data.all_valid_keys())
    with (Path(report.report_dir) / "rejects.csv").open(encoding="utf-8", newline="") as handle:
        rejects = {(r["data_type"], r["registration_id"]) for r in csv.DictReader(handle)}
    # NOTE: by key, not by source row: a table read without ORDER BY has no fixed row order
    assert rejects == {
        (dt, data.frames[dt].loc[row, "reg_id"]) for dt, rows in data.bad.items() for row in rows
    }
