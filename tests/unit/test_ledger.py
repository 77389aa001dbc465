"""The ledger: migrations, integration stages, record outcomes, runs, files and watermarks."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from datetime import timedelta

import pandas as pd
import pytest
import sqlalchemy as sa

from grip.errors import LedgerError
from grip.ledger import (
    FATE_FILTERED,
    LEAN_STATE_COLUMNS,
    STATE_COLUMNS,
    FileEntry,
    Ledger,
    OutcomeEntry,
    Problem,
    RowFate,
    Stage,
    upgrade,
)
from grip.ledger.models import VERSION_TABLE, Base


def pg_schema_url(pg_url: str) -> Iterator[str]:
    """A fresh schema in the session's PostgreSQL database, as a URL whose search_path is it."""
    schema = f"ledger_{secrets.token_hex(4)}"
    admin = sa.create_engine(pg_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
    url = sa.make_url(pg_url).update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
        admin.dispose()


@pytest.fixture(
    params=["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)],
)
def ledger_url(request: pytest.FixtureRequest, tmp_path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'ledger.sqlite'}"
    else:
        yield from pg_schema_url(request.getfixturevalue("pg_url"))


@pytest.fixture
def ledger(ledger_url: str) -> Iterator[Ledger]:
    with Ledger(ledger_url) as opened:
        yield opened


def test_migrations_are_idempotent_and_match_the_models(ledger_url: str) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    assert upgrade(ledger_url) == "0005"
    with Ledger(ledger_url) as ledger:
        run_id = ledger.start_run("demo", "full")
        assert upgrade(ledger.engine) == "0005"
        assert ledger.run(run_id).stage == "full"
        with ledger.engine.connect() as conn:
            context = MigrationContext.configure(
                conn, opts={"version_table": VERSION_TABLE, "compare_type": True}
            )
            assert compare_metadata(context, Base.metadata) == []


def test_upgrade_names_an_unreachable_ledger_without_its_password() -> None:
    url = "postgresql+psycopg2://grip:s3cret@127.0.0.1:1/ledger"
    with pytest.raises(LedgerError, match=r"cannot migrate the ledger at .*127\.0\.0\.1:1") as info:
        upgrade(url)
    assert "s3cret" not in str(info.value)


@pytest.mark.parametrize(
    ("url", "match"),
    [
        ("not a url", "is not a SQLAlchemy URL"),
        ("mysql+pymysql://root@127.0.0.1/x", "PostgreSQL or SQLite"),
    ],
)
def test_unsupported_ledger_urls(url: str, match: str) -> None:
    with pytest.raises(LedgerError, match=match):
        Ledger(url, migrate=False)


def test_integration_stages_and_decisions(ledger: Ledger) -> None:
    assert ledger.integration("demo") is None
    assert ledger.ensure_integration("demo").stage is Stage.NEW
    ledger.set_stage("demo", Stage.AWAITING_APPROVAL, sample_run_id=3, sample_fingerprint="f1")
    state = ledger.record_decision(
        "demo", approved=False, by="pm", comment="titles wrong", fingerprint="f1", sample_run_id=3
    )
    assert state.stage is Stage.SAMPLE_REJECTED
    assert state.approved_fingerprint is None
    state = ledger.record_decision(
        "demo", approved=True, by="pm2", comment="fine now", fingerprint="f2", sample_run_id=4
    )
    assert state.stage is Stage.APPROVED
    assert (state.approved_fingerprint, state.decided_by, state.decision_comment) == (
        "f2",
        "pm2",
        "fine now",
    )
    assert state.decided_at is not None
    history = ledger.decisions("demo")
    assert [(d["approved"], d["decided_by"]) for d in history] == [(False, "pm"), (True, "pm2")]
    assert [i.name for i in ledger.integrations()] == ["demo"]


def _entry(rid: str, outcome: str, digest: str, **kw) -> OutcomeEntry:
    return OutcomeEntry("visitor", rid, outcome, digest, **kw)


def test_outcomes_keep_the_last_accepted_version(ledger: Ledger) -> None:
    run1 = ledger.start_run("demo", "full")
    ledger.add_chunks(run1, [(0, "/tmp/c0.parquet", 3)])
    ledger.record_outcomes(
        run1,
        [
            _entry("A", "created", "h1", payload_json='{"n":1}', grip_id=10, attempts=1),
            _entry("B", "failed", "hb", reason="timeout", attempts=3),
            _entry("C", "rejected", "hc", reason="unknown type_id", status=422),
        ],
        integration="demo",
        chunk_no=0,
    )
    run2 = ledger.start_run("demo", "sync")
    ledger.add_chunks(run2, [(0, "/tmp/c0.parquet", 2)])
    ledger.record_outcomes(
        run2,
        [
            _entry("A", "rejected", "h2", reason="headline too long", status=422),
            _entry("B", "created", "hb", payload_json='{"b":1}', grip_id=11),
        ],
        integration="demo",
        chunk_no=0,
    )
    a = ledger.record("demo", "visitor", "A")
    assert (a["accepted_hash"], a["sent_hash"], a["last_outcome"]) == ("h1", "h2", "rejected")
    assert (a["grip_id"], a["attempts"], a["last_run_id"]) == (10, 2, run2)
    assert a["first_pushed_at"] < a["last_pushed_at"]
    b = ledger.record("demo", "visitor", "B")
    assert (b["accepted_hash"], b["last_outcome"], b["attempts"], b["last_reason"]) == (
        "hb",
        "created",
        4,
        None,
    )
    assert ledger.accepted_payloads("demo", [("visitor", "A"), ("visitor", "C")]) == {
        ("visitor", "A"): '{"n":1}'
    }
    assert ledger.accepted_hashes("demo", [("visitor", "A"), ("visitor", "C")]) == {
        ("visitor", "A"): "h1"
    }
    chunk = ledger.chunk(run1, 0)
    assert (chunk.created, chunk.failed, chunk.rejected, chunk.requests) == (1, 1, 1, 5)
    problems = list(ledger.problems(run1))
    assert [(p.registration_id, p.outcome, p.reasons, p.status) for p in problems] == [
        ("B", "failed", "timeout", None),
        ("C", "rejected", "unknown type_id", 422),
    ]
    state = ledger.load_state("demo").set_index("registration_id")
    assert state.loc["A", "accepted_hash"] == "h1"
    assert state.loc["C", "last_outcome"] == "rejected"
    assert pd.isna(state.loc["C", "accepted_hash"])
    # sent hashes, whether they equal the accepted one, differ from it or stand alone
    assert state["sent_hash"].to_dict() == {"A": "h2", "B": "hb", "C": "hc"}
    other = ledger.load_state("demo", ["exhibitor"])
    assert other.empty
    assert list(other.columns) == list(STATE_COLUMNS)
    # without the content hashes: a flag says what Grip holds, the hashes are asked for
    for data_types in (None, ["visitor"], ["visitor", "exhibitor"]):
        lean = ledger.load_state("demo", data_types, hashes=False)
        assert list(lean.columns) == list(LEAN_STATE_COLUMNS)
        lean = lean.set_index("registration_id")
        assert lean["accepted"].to_dict() == {"A": True, "B": True, "C": False}
        assert set(lean["data_type"]) == {"visitor"}
        assert lean.loc["C", "last_outcome"] == "rejected"
    assert list(ledger.load_state("demo", ["exhibitor"], hashes=False).columns) == list(
        LEAN_STATE_COLUMNS
    )
    assert ledger.content_state("demo", "visitor", ["A", "C", "nobody", "A"]) == {
        "A": ("h1", "h2", "rejected"),
        "C": (None, "hc", "rejected"),
    }
    assert ledger.content_state("demo", "exhibitor", ["A"]) == {}
    assert ledger.record_counts("demo") == {"visitor": {"rejected": 2, "created": 1}}


def test_validation_problems_mark_records_invalid_but_keep_what_grip_holds(ledger: Ledger) -> None:
    run1 = ledger.start_run("demo", "full")
    ledger.add_chunks(run1, [(0, "c", 1)])
    ledger.record_outcomes(
        run1, [_entry("A", "created", "h1", payload_json="{}")], integration="demo", chunk_no=0
    )
    run2 = ledger.start_run("demo", "sync")
    ledger.record_problems(
        run2,
        [
            Problem("visitor", "A", 4, "validation", "invalid", "email: not an address"),
            Problem("visitor", None, 5, "validation", "invalid", "registration_id: missing"),
            Problem("visitor", "N", 6, "validation", "invalid", "headline: longer than 140"),
        ],
        integration="demo",
    )
    a = ledger.record("demo", "visitor", "A")
    assert (a["accepted_hash"], a["last_outcome"], a["last_reason"]) == (
        "h1",
        "invalid",
        "email: not an address",
    )
    assert ledger.record("demo", "visitor", "N")["accepted_hash"] is None
    assert ledger.problem_reasons(run2) == {
        ("validation", "email: not an address"): 1,
        ("validation", "registration_id: missing"): 1,
        ("validation", "headline: longer than 140"): 1,
    }


def test_seen_and_vanished_records(ledger: Ledger) -> None:
    run1 = ledger.start_run("demo", "full")
    ledger.add_chunks(run1, [(0, "c", 3)])
    ledger.record_outcomes(
        run1,
        [_entry(r, "created", "h") for r in ("A", "B", "C")],
        integration="demo",
        chunk_no=0,
    )
    run2 = ledger.start_run("demo", "sync")
    state = ledger.load_state("demo")
    ledger.mark_seen(run2, "demo", "visitor", state[state["registration_id"] == "B"])
    run3 = ledger.start_run("demo", "sync")
    state = ledger.load_state("demo")
    ledger.mark_seen(run3, "demo", "visitor", state[state["registration_id"].isin(["B", "C"])])
    rows = {r: ledger.record("demo", "visitor", r) for r in "ABC"}
    assert (rows["A"]["last_seen_run_id"], rows["A"]["vanished_run_id"]) == (run3, None)
    assert (rows["B"]["last_seen_run_id"], rows["B"]["vanished_run_id"]) == (run1, run2)
    assert (rows["C"]["last_seen_run_id"], rows["C"]["vanished_run_id"]) == (run2, run3)
    assert rows["B"]["accepted_hash"] == "h"  # reported, never deleted
    assert ledger.record_counts("demo") == {"visitor": {"created": 1, "vanished": 2}}
    assert ledger.seen_run("demo", "visitor") == run3
    run4 = ledger.start_run("demo", "sync")
    state = ledger.load_state("demo")
    ledger.mark_seen(run4, "demo", "visitor", state[state["registration_id"] == "C"], ["B"])
    b = ledger.record("demo", "visitor", "B")
    assert (b["last_seen_run_id"], b["vanished_run_id"]) == (run4, None)
    c = ledger.record("demo", "visitor", "C")
    assert (c["last_seen_run_id"], c["vanished_run_id"]) == (run2, run3)


def test_files_and_watermarks_count_only_once_the_run_commits(ledger: Ledger) -> None:
    run1 = ledger.start_run("demo", "sync")
    ledger.add_files(run1, "demo", [FileEntry("visitor", "a.csv", 10, 1.5, "ab" * 32)])
    assert ledger.processed_files("demo", "visitor") == []
    assert ledger.watermark("demo", "visitor") is None
    ledger.commit_run(run1, "demo", {"visitor": "2025-01-02T03:04:05", "exhibitor": None})
    assert ledger.processed_files("demo", "visitor") == [
        FileEntry("visitor", "a.csv", 10, 1.5, "ab" * 32)
    ]
    assert ledger.watermark("demo", "visitor") == "2025-01-02T03:04:05"
    run2 = ledger.start_run("demo", "sync")
    ledger.commit_run(run2, "demo", {"visitor": 42})
    assert ledger.watermarks("demo") == {"visitor": 42}
    assert ledger.run_files(run1)[0].name == "a.csv"


def test_runs_chunks_and_stale_runs(ledger: Ledger) -> None:
    run_id = ledger.start_run("demo", "full", fingerprint="f", label="manual")
    ledger.update_run(run_id, read=10, details={"timings": {"read": 1.5}})
    info = ledger.run(run_id)
    assert (info.read, info.details, info.status, info.label) == (
        10,
        {"timings": {"read": 1.5}},
        "running",
        "manual",
    )
    assert info.counts["read"] == 10
    assert [r.id for r in ledger.runs("demo")] == [run_id]
    with pytest.raises(LedgerError, match="run 999 is not in the ledger"):
        ledger.run(999)
    with pytest.raises(LedgerError, match=f"run {run_id} has no push chunk 3"):
        ledger.chunk(run_id, 3)
    # the run belongs to this live process: not stale until its heartbeat is old
    assert ledger.abandon_stale_runs("demo", stale_after=timedelta(hours=1)) == []
    assert ledger.abandon_stale_runs("demo", stale_after=timedelta(seconds=-1)) == [run_id]
    assert ledger.run(run_id).status == "abandoned"
    dead = ledger.start_run("demo", "sync")
    ledger.update_run(dead, pid=2**22 + 12345)
    assert ledger.abandon_stale_runs("demo", stale_after=timedelta(hours=1)) == [dead]


def test_table_snapshot_sees_every_change(ledger: Ledger) -> None:
    before = ledger.table_snapshot()
    assert set(before) == {
        "grip_integrations",
        "grip_decisions",
        "grip_records",
        "grip_runs",
        "grip_run_chunks",
        "grip_run_problems",
        "grip_run_files",
        "grip_watermarks",
        "grip_row_fates",
        "grip_seen",
    }
    ledger.ensure_integration("demo")
    assert ledger.table_snapshot() != before


def test_upgrade_keeps_the_data_of_an_older_ledger(ledger_url: str) -> None:
    upgrade(ledger_url, revision="0001")
    engine = sa.create_engine(ledger_url)
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO grip_records (integration, data_type, registration_id, "
                "accepted_hash, last_outcome, attempts) VALUES ('demo', 'visitor', 'A', 'h', "
                "'created', 1)"
            )
        )
    engine.dispose()
    assert upgrade(ledger_url) == "0005"
    with Ledger(ledger_url) as ledger:
        record = ledger.record("demo", "visitor", "A")
        assert (record["accepted_hash"], record["source_hash"]) == ("h", None)


def test_row_fates_of_an_older_ledger_were_set_aside_by_validation(ledger_url: str) -> None:
    upgrade(ledger_url, revision="0004")
    engine = sa.create_engine(ledger_url)
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO grip_row_fates (integration, data_type, source_hash, reasons, "
                "run_id) VALUES ('demo', 'visitor', 5, 'key: missing', 1)"
            )
        )
    engine.dispose()
    assert upgrade(ledger_url) == "0005"
    with Ledger(ledger_url) as ledger:
        fates = ledger.load_fates("demo", ["visitor"])
        assert list(zip(fates["source_hash"], fates["outcome"], strict=True)) == [(5, "invalid")]


def test_refresh_unchanged_keeps_source_hashes_current(ledger: Ledger) -> None:
    run = ledger.start_run("demo", "full")
    ledger.add_chunks(run, [(0, "c", 2)])
    big = 2**63 - 7
    ledger.record_outcomes(
        run,
        [_entry("A", "created", "h1", source_hash=5), _entry("B", "created", "h2")],
        integration="demo",
        chunk_no=0,
    )
    ledger.record_problems(
        run, [Problem("visitor", "B", 2, "validation", "invalid", "bad")], integration="demo"
    )
    ledger.refresh_unchanged("demo", "visitor", [("A", -big), ("B", big)])
    a, b = ledger.record("demo", "visitor", "A"), ledger.record("demo", "visitor", "B")
    assert (a["source_hash"], a["last_outcome"]) == (-big, "created")
    assert (b["source_hash"], b["last_outcome"], b["last_reason"]) == (big, "unchanged", None)
    state = ledger.load_state("demo").set_index("registration_id")
    assert int(state.loc["B", "source_hash"]) == big
    assert int(state.loc["A", "source_hash"]) == -big


def test_row_fates_are_replaced_by_a_whole_read_and_added_to_otherwise(ledger: Ledger) -> None:
    big = -(2**63) + 1
    ledger.save_fates(1, "demo", "visitor", [(big, None, "key: missing")], replace=True)
    ledger.save_fates(
        1, "demo", "visitor", [(7, "A", "unique_key: 'A' is already the key")], replace=False
    )
    ledger.save_fates(1, "demo", "exhibitor", [(8, None, "key: missing")], replace=True)
    fates = ledger.load_fates("demo", ["visitor"])
    assert sorted(zip(fates["source_hash"], fates["registration_id"].fillna(""), strict=True)) == [
        (big, ""),
        (7, "A"),
    ]
    ledger.save_fates(2, "demo", "visitor", [(9, None, "key: missing")], replace=True)
    assert list(ledger.load_fates("demo", ["visitor"])["source_hash"]) == [9]
    # a whole read keeps the fates it found again without writing them, and drops the rest
    ledger.save_fates(
        3, "demo", "visitor", [RowFate(10, None, "cancelled", FATE_FILTERED)], replace=True
    )
    ledger.save_fates(
        4,
        "demo",
        "visitor",
        [RowFate(11, None, "test_registration", FATE_FILTERED)],
        replace=True,
        kept=[10],
    )
    fates = ledger.load_fates("demo", ["visitor"]).sort_values("source_hash")
    assert fates[["source_hash", "reasons", "outcome"]].values.tolist() == [
        [10, "cancelled", "filtered"],
        [11, "test_registration", "filtered"],
    ]
    # an incremental read only adds
    ledger.save_fates(5, "demo", "visitor", [(12, None, "key: missing")], replace=False)
    assert sorted(ledger.load_fates("demo", ["visitor"])["source_hash"]) == [10, 11, 12]
    both = ledger.load_fates("demo", ["exhibitor", "visitor"])
    assert sorted(zip(both["data_type"], both["source_hash"], strict=True)) == [
        ("exhibitor", 8),
        ("visitor", 10),
        ("visitor", 11),
        ("visitor", 12),
    ]


def test_many_problems_keep_every_value(ledger: Ledger) -> None:
    run = ledger.start_run("demo", "sync")
    problems = [
        Problem(
            "visitor",
            None if i % 7 == 0 else f"R{i}",
            i,
            "validation",
            "invalid",
            f"email: 'a,\"b' is not an address; line {i}\nsecond line",
        )
        for i in range(2500)
    ]
    ledger.record_problems(run, problems, integration="demo", update_records=False)
    assert list(ledger.problems(run)) == problems
    assert ledger.record("demo", "visitor", "R1") == {}


@pytest.mark.integration
def test_a_copy_that_fails_half_way_raises_instead_of_giving_part_of_the_state(
    pg_url: str,
) -> None:
    from grip.ledger.repository import _pg_copy_frame

    engine = sa.create_engine(pg_url)
    # rows stream out before the failing one: the reader has parsed part of the text
    failing = sa.literal_column("CASE WHEN g < 200000 THEN g ELSE 1 / (g - g) END")
    stmt = sa.select(failing.label("source_hash")).select_from(
        sa.text("generate_series(1, 300000) AS g")
    )
    try:
        with engine.connect() as conn, pytest.raises(Exception, match="division by zero"):
            _pg_copy_frame(conn, stmt)
        whole = sa.select(sa.literal_column("g").label("source_hash")).select_from(
            sa.text("generate_series(1, 300000) AS g")
        )
        with engine.connect() as conn:
            frame = _pg_copy_frame(conn, whole)
        assert frame["source_hash"].tolist() == list(range(1, 300001))
    finally:
        engine.dispose()
