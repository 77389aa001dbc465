"""The sync engine end to end: a PostgreSQL source and ledger, the sandbox over real HTTP."""

from __future__ import annotations

import gc
import secrets
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

from grip.api import ClientSettings, GripClient
from grip.config import Integration, load_integration
from grip.engine.bulk import huge_pages_disabled
from grip.errors import ConfigError, StageRefusedError
from grip.ledger import Ledger, Stage
from grip.report import PROBLEMS_CSV, read_report
from grip.sources import build_source
from grip.sync import record_decision, run_stage
from tests.unit.test_ledger import pg_schema_url

pytestmark = pytest.mark.integration

MAPPING = """\
data_type: visitor
type_id: 380
default_container_id: 90001
generate_relationships: 1
new_event_join_type: join_and_patch
location_code: en-GB
key: reg_id
fields:
  first_name: {column: first_name, transforms: [trim], required: true}
  last_name: {column: last_name, transforms: [trim], required: true}
  name: {template: "{first_name} {last_name}"}
  email: {column: email, transforms: [email], required: true}
  company_name: {column: company, transforms: [trim]}
metadata:
  interest:
    column: interest
    transforms: [trim]
"""


def source_rows(count: int) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "reg_id": [f"R{i:04d}" for i in range(count)],
            "first_name": [f"First{i}" for i in range(count)],
            "last_name": [f"Last{i}" for i in range(count)],
            "email": [f"person{i}@example.com" for i in range(count)],
            "company": [f"Company {i % 7}" for i in range(count)],
            "interest": ["" if i % 3 else f"Topic {i}" for i in range(count)],
        }
    )


@dataclass
class Feed:
    """An integration whose visitors are a PostgreSQL table, with its ledger."""

    integration: Integration
    folder: Path
    source: sa.Engine
    table: str
    ledger: Ledger
    sandbox: object

    def execute(self, sql: str, **params: object) -> None:
        with self.source.begin() as conn:
            conn.execute(sa.text(sql.format(table=self.table)), params)

    def run(self, stage: str, **kwargs: object):
        kwargs.setdefault("client", self.client())
        return run_stage(
            self.integration,
            stage,
            ledger=self.ledger,
            work_root=self.folder / "work",
            report_root=self.folder / "reports",
            **kwargs,
        )

    def client(self, **overrides: object) -> GripClient:
        values: dict[str, object] = {
            "base_url": self.sandbox.base_url,
            "token": self.sandbox.token,
            "concurrency": 4,
            "max_attempts": 2,
            "backoff_base": 0.01,
            "backoff_max": 0.05,
            "progress_interval": 60,
        }
        values.update(overrides)
        return GripClient(ClientSettings(**values))

    def approve(self) -> None:
        record_decision(self.integration.name, True, "pm@example.com", "fine", ledger=self.ledger)

    def onboard(self) -> None:
        """Sample, approval and full import."""
        self.run("sample")
        self.approve()
        report = self.run("full")
        assert report.status == "succeeded"

    def requests(self) -> int:
        return int(self.sandbox.stats()["requests"])

    def stored(self) -> dict[str, dict]:
        return {p["registration_id"]: p for p in self.sandbox.profiles()}


@pytest.fixture
def ledger_url(pg_url: str) -> Iterator[str]:
    yield from pg_schema_url(pg_url)


@pytest.fixture
def feed(tmp_path: Path, pg_url: str, ledger_url: str, sandbox) -> Iterator[Feed]:
    table = f"visitors_{secrets.token_hex(4)}"
    source = sa.create_engine(pg_url)
    source_rows(60).to_sql(table, source, index=False)
    (tmp_path / "visitor.yaml").write_text(MAPPING, encoding="utf-8")
    (tmp_path / "feed.yaml").write_text(
        textwrap.dedent(
            f"""\
            name: feed_{secrets.token_hex(3)}
            application:
              languages: [en-gb, ru-ru]
              type_ids: {{visitor: 380}}
              container_ids: [90001]
            data_types:
              visitor:
                mapping: visitor.yaml
                source: {{kind: sql, url: "{pg_url}", table: {table}}}
            ledger_url: "{ledger_url}"
            sample_size: 10
            limits: {{max_reject_share: 0.2, chunk_size: 25}}
            """
        ),
        encoding="utf-8",
    )
    integration = load_integration(tmp_path / "feed.yaml")
    with Ledger(ledger_url) as ledger:
        yield Feed(integration, tmp_path, source, table, ledger, sandbox)
    with source.begin() as conn:
        conn.exec_driver_sql(f"DROP TABLE IF EXISTS {table}")
    source.dispose()


def test_full_then_sync_without_change_sends_nothing(feed: Feed) -> None:
    feed.onboard()
    assert len(feed.stored()) == 60
    before = feed.requests()

    report = feed.run("sync")

    assert feed.requests() == before
    assert report.status == "succeeded"
    assert report.counts["planned_unchanged"] == 60
    assert report.counts["skipped_unchanged"] == 60  # not one row was mapped again
    assert report.counts["to_push"] == 0
    assert feed.ledger.integration(feed.integration.name).stage is Stage.LIVE


def test_the_read_and_plan_run_under_bulk_settings_that_end_with_them(feed: Feed) -> None:
    feed.onboard()
    seen: list[tuple[bool, bool | None]] = []

    def recording_builder(config, **kwargs):
        source = build_source(config, **kwargs)
        chunks = source.chunks

        def recorded():
            for frame in chunks():
                seen.append((gc.isenabled(), huge_pages_disabled()))
                yield frame

        source.chunks = recorded
        return source

    thp_before = huge_pages_disabled()
    report = feed.run("sync", source_builder=recording_builder)

    assert report.counts["planned_unchanged"] == 60
    assert seen, "the source was not read"
    expected_thp = True if sys.platform.startswith("linux") else None
    assert set(seen) == {(False, expected_thp)}
    assert gc.isenabled()
    assert huge_pages_disabled() == thp_before


def test_one_changed_row_sends_exactly_one_request(feed: Feed) -> None:
    feed.onboard()
    feed.execute("UPDATE {table} SET company = 'Moved Ltd' WHERE reg_id = 'R0007'")
    before = feed.requests()

    report = feed.run("sync")

    assert feed.requests() - before == 1
    assert (report.counts["planned_changed"], report.counts["updated"]) == (1, 1)
    assert report.counts["skipped_unchanged"] == 59
    assert report.examples == [
        {
            "data_type": "visitor",
            "registration_id": "R0007",
            "field": "company_name",
            "old": "Company 0",
            "new": "Moved Ltd",
        }
    ]
    assert feed.stored()["R0007"]["company_name"] == "Moved Ltd"


def test_a_row_made_invalid_is_rejected_and_reported(feed: Feed) -> None:
    feed.onboard()
    feed.execute("UPDATE {table} SET email = 'not an address' WHERE reg_id = 'R0011'")
    before = feed.requests()

    report = feed.run("sync")

    assert feed.requests() == before
    assert report.counts["invalid"] == 1
    assert report.validation_reasons
    rejects = pd.read_csv(Path(report.report_dir) / PROBLEMS_CSV, dtype=str)
    assert list(rejects["registration_id"]) == ["R0011"]
    assert list(rejects["stage"]) == ["validation"]
    assert "email" in rejects["reasons"].iloc[0]
    record = feed.ledger.record(feed.integration.name, "visitor", "R0011")
    assert record["last_outcome"] == "invalid"
    assert record["accepted_hash"] is not None  # Grip keeps the version it accepted
    assert feed.stored()["R0011"]["email"] == "person11@example.com"
    # the same bad row again: rejected for the same reasons without being mapped again
    again = feed.run("sync")
    assert (again.counts["invalid"], again.counts["skipped_unchanged"]) == (1, 60)
    assert again.validation_reasons == report.validation_reasons
    rejects_again = pd.read_csv(Path(again.report_dir) / PROBLEMS_CSV, dtype=str)
    assert list(rejects_again["reasons"]) == list(rejects["reasons"])


def test_api_failures_are_retried_by_the_next_sync(feed: Feed) -> None:
    feed.run("sample")
    feed.approve()
    feed.sandbox.configure(error_500_share=0.5, seed=11)

    first = feed.run("full")

    failed = first.counts["failed"]
    assert failed > 0
    assert first.status == "partial"
    assert first.api_reasons
    feed.sandbox.configure(error_500_share=0.0)
    before = feed.requests()

    second = feed.run("sync")

    assert second.counts["planned_retry"] == failed
    assert second.counts["to_push"] == failed
    assert feed.requests() - before == failed
    assert second.status == "succeeded"
    assert sorted(feed.stored()) == sorted(source_rows(60)["reg_id"])


def test_dry_run_changes_no_ledger_table(feed: Feed) -> None:
    feed.onboard()
    feed.execute("UPDATE {table} SET last_name = 'Changed' WHERE reg_id = 'R0003'")
    feed.execute("DELETE FROM {table} WHERE reg_id = 'R0004'")
    snapshot = feed.ledger.table_snapshot()
    before = feed.requests()

    report = feed.run("sync", dry_run=True, client=None)

    assert feed.ledger.table_snapshot() == snapshot
    assert feed.requests() == before
    assert report.dry_run
    assert (report.counts["planned_changed"], report.counts["vanished"]) == (1, 1)
    assert {(e["field"], e["old"], e["new"]) for e in report.examples} == {
        ("last_name", "Last3", "Changed"),
        ("name", "First3 Last3", "First3 Changed"),
    }
    assert read_report(report.report_dir)["dry_run"] is True


def test_full_and_sync_refuse_an_unapproved_integration(feed: Feed) -> None:
    for stage in ("full", "sync"):
        with pytest.raises(StageRefusedError, match="needs an approved sample.*stage 'new'"):
            feed.run(stage)
        # a dry run plans all the same, and says what a real run would meet
        dry = feed.run(stage, dry_run=True, client=None)
        assert dry.counts["planned_new"] == 60
        assert dry.warnings[0].startswith(f"a real {stage} run would be refused")
    assert feed.requests() == 0
    assert feed.ledger.integration(feed.integration.name) is None
    feed.run("sample")
    for stage in ("full", "sync"):
        with pytest.raises(StageRefusedError, match="stage 'awaiting_approval'"):
            feed.run(stage)
    record_decision(feed.integration.name, False, "pm", "titles wrong", ledger=feed.ledger)
    with pytest.raises(StageRefusedError, match="stage 'sample_rejected'"):
        feed.run("full")
    assert len(feed.stored()) == 10
    assert [run.stage for run in feed.ledger.runs(feed.integration.name)] == ["sample"]


def test_a_changed_mapping_stops_the_sync(feed: Feed) -> None:
    feed.onboard()
    mapping = feed.folder / "visitor.yaml"
    mapping.write_text(
        MAPPING.replace(
            "company_name: {column: company, transforms: [trim]}", "job_title: {column: company}"
        ),
        encoding="utf-8",
    )
    before = feed.requests()

    with pytest.raises(StageRefusedError, match="a new sample approval is needed"):
        feed.run("sync")

    assert feed.requests() == before
    sample = feed.run("sample")
    assert sample.status == "succeeded"
    feed.approve()
    report = feed.run("sync")
    assert report.counts["planned_changed"] == 60 - 10  # the new sample pushed ten already
    assert all(p["job_title"].startswith("Company") for p in feed.stored().values())


def test_vanished_records_are_reported_not_deleted(feed: Feed) -> None:
    feed.onboard()
    feed.execute("DELETE FROM {table} WHERE reg_id IN ('R0001', 'R0002')")

    report = feed.run("sync")

    assert report.counts["vanished"] == 2
    assert {v["registration_id"] for v in report.vanished} == {"R0001", "R0002"}
    assert (Path(report.report_dir) / "vanished.csv").exists()
    record = feed.ledger.record(feed.integration.name, "visitor", "R0001")
    assert record["vanished_run_id"] is not None
    assert record["accepted_hash"] is not None
    assert "R0001" in feed.stored()
    feed.execute(
        "INSERT INTO {table} (reg_id, first_name, last_name, email, company, interest) "
        "VALUES ('R0001', 'First1', 'Last1', 'person1@example.com', 'Company 1', '')"
    )
    back = feed.run("sync")
    assert (back.counts["vanished"], back.counts["to_push"]) == (1, 0)
    record = feed.ledger.record(feed.integration.name, "visitor", "R0001")
    assert (record["vanished_run_id"], record["last_seen_run_id"]) == (None, back.run_id)


def test_a_repeated_id_is_rejected_and_the_first_row_kept(feed: Feed) -> None:
    feed.execute(
        "INSERT INTO {table} (reg_id, first_name, last_name, email, company, interest) "
        "VALUES ('R0005', 'Other', 'Person', 'other@example.com', 'X', '')"
    )
    feed.run("sample")
    feed.approve()

    report = feed.run("full")

    assert report.counts["invalid"] == 1
    assert feed.stored()["R0005"]["first_name"] == "First5"
    rejects = pd.read_csv(Path(report.report_dir) / PROBLEMS_CSV, dtype=str)
    assert list(rejects["registration_id"]) == ["R0005"]
    assert list(rejects["source_row"]) == ["61"]
    assert "already the key of source row 6" in rejects["reasons"].iloc[0]


def test_a_fixed_row_is_unchanged_again_without_a_request(feed: Feed) -> None:
    feed.onboard()
    feed.execute("UPDATE {table} SET email = 'broken' WHERE reg_id = 'R0020'")
    assert feed.run("sync").counts["invalid"] == 1
    feed.execute("UPDATE {table} SET email = 'person20@example.com' WHERE reg_id = 'R0020'")
    before = feed.requests()

    fixed = feed.run("sync")

    assert feed.requests() == before
    assert (fixed.counts["invalid"], fixed.counts["planned_unchanged"]) == (0, 60)
    record = feed.ledger.record(feed.integration.name, "visitor", "R0020")
    assert (record["last_outcome"], record["last_reason"]) == ("unchanged", None)
    again = feed.run("sync")
    assert again.counts["skipped_unchanged"] == 60


def test_a_new_row_repeating_a_synced_id_is_rejected(feed: Feed) -> None:
    feed.onboard()
    feed.execute(
        "INSERT INTO {table} (reg_id, first_name, last_name, email, company, interest) "
        "VALUES ('R0009', 'Other', 'Person', 'other@example.com', 'X', '')"
    )
    before = feed.requests()

    report = feed.run("sync")

    assert feed.requests() == before
    assert report.counts["invalid"] == 1
    rejects = pd.read_csv(Path(report.report_dir) / PROBLEMS_CSV, dtype=str)
    assert list(rejects["source_row"]) == ["61"]
    assert "already the key of source row 10" in rejects["reasons"].iloc[0]
    assert feed.stored()["R0009"]["first_name"] == "First9"
    # unchanged, the repeated row is set aside again without being mapped
    again = feed.run("sync")
    assert (again.counts["invalid"], again.counts["skipped_unchanged"]) == (1, 61)
    # once the row it repeated is gone, it is a valid change of R0009
    feed.execute("DELETE FROM {table} WHERE reg_id = 'R0009' AND first_name = 'First9'")
    before = feed.requests()
    last = feed.run("sync")
    assert (last.counts["invalid"], last.counts["planned_changed"]) == (0, 1)
    assert feed.requests() - before == 1
    assert feed.stored()["R0009"]["first_name"] == "Other"


def test_too_many_rejects_stop_the_run_with_a_report_of_them(feed: Feed) -> None:
    from grip.errors import DataValidationError

    feed.run("sample")
    feed.approve()
    feed.execute("UPDATE {table} SET email = 'broken' WHERE reg_id >= 'R0040'")
    before = feed.requests()

    with pytest.raises(DataValidationError, match=r"visitor: 20 of 60 rows rejected \(33\.3%\)"):
        feed.run("full")

    assert feed.requests() == before
    run = feed.ledger.runs(feed.integration.name, limit=1)[0]
    assert (run.stage, run.status, run.invalid) == ("full", "failed", 20)
    assert "the run stopped" in (run.message or "")
    rejects = pd.read_csv(Path(run.report_dir or "") / PROBLEMS_CSV, dtype=str)
    assert len(rejects) == 20
    assert set(rejects["stage"]) == {"validation"}


def test_a_sample_can_be_drawn_from_chosen_data_types(feed: Feed) -> None:
    folder = feed.folder
    (folder / "exhibitor.yaml").write_text(
        MAPPING.replace("data_type: visitor", "data_type: exhibitor").replace("380", "381"),
        encoding="utf-8",
    )
    spec = (folder / "feed.yaml").read_text(encoding="utf-8")
    spec = spec.replace("{visitor: 380}", "{visitor: 380, exhibitor: 381}").replace(
        "data_types:\n",
        "data_types:\n  exhibitor:\n    mapping: exhibitor.yaml\n"
        f'    source: {{kind: sql, url: "{feed.source.url.render_as_string(False)}", '
        f"table: {feed.table}_x}}\n",
    )
    (folder / "feed.yaml").write_text(spec, encoding="utf-8")
    # the exhibitors: the same people under other keys
    feed.execute(
        "CREATE TABLE {table}_x AS SELECT 'X' || reg_id AS reg_id, first_name, last_name, "
        "email, company, interest FROM {table}"
    )
    feed.integration = load_integration(folder / "feed.yaml")

    report = feed.run("sample", sample_data_types=["exhibitor"])
    assert report.status == "succeeded"
    assert {p["type_id"] for p in feed.stored().values()} == {381}
    assert report.counts["read"] == 120  # every data type is still read and validated

    with pytest.raises(ConfigError, match=r"choose one or more of .*visitor"):
        feed.run("sample", sample_data_types=["speaker"])
    feed.execute("DROP TABLE {table}_x")


def test_rows_a_filter_left_out_are_left_out_again_without_being_mapped(feed: Feed) -> None:
    rule = 'filters:\n  - {name: company_three, column: company, in: ["Company 3"]}\n'
    (feed.folder / "visitor.yaml").write_text(MAPPING + rule, encoding="utf-8")
    feed.integration = load_integration(feed.folder / "feed.yaml")
    left_out = {f"R{i:04d}" for i in range(60) if i % 7 == 3}
    feed.onboard()
    assert set(feed.stored()) == {f"R{i:04d}" for i in range(60)} - left_out
    name = feed.integration.name

    def filtered_fates() -> int:
        fates = feed.ledger.load_fates(name, ["visitor"])
        return int((fates["outcome"] == "filtered").sum())

    assert filtered_fates() == len(left_out)  # the full run kept what the filter did

    report = feed.run("sync")

    assert report.counts["filtered"] == len(left_out)
    assert report.counts["skipped_unchanged"] == 60  # the left-out rows were not mapped either
    details = feed.ledger.run(report.run_id or 0).details
    assert details["filtered_reasons"] == {"company_three": len(left_out)}

    # a left-out row changes so that the filter no longer matches it: mapped, then pushed
    feed.execute("UPDATE {table} SET company = 'Company 4' WHERE reg_id = 'R0003'")
    before = feed.requests()
    again = feed.run("sync")
    assert feed.requests() - before == 1
    assert (again.counts["planned_new"], again.counts["filtered"]) == (1, len(left_out) - 1)
    assert again.counts["skipped_unchanged"] == 59
    assert "R0003" in feed.stored()
    assert filtered_fates() == len(left_out) - 1  # the row's old fate went with the whole read


def test_a_sync_where_most_rows_changed_reads_every_hash_at_once(
    feed: Feed, monkeypatch: pytest.MonkeyPatch
) -> None:
    import grip.engine.plan as plan

    feed.onboard()
    feed.execute("UPDATE {table} SET company = 'Moved Ltd' WHERE reg_id <> 'R0000'")
    monkeypatch.setattr(plan, "LOOKUPS_BEFORE_BULK", 5)
    loads = []
    adopt = plan.LedgerIndex._adopt_hashes

    def counted(index: plan.LedgerIndex, contents: pd.DataFrame) -> None:
        loads.append(len(contents))
        adopt(index, contents)

    monkeypatch.setattr(plan.LedgerIndex, "_adopt_hashes", counted)
    before = feed.requests()

    report = feed.run("sync")

    assert loads == [60]
    assert (report.counts["planned_changed"], report.counts["planned_unchanged"]) == (59, 1)
    assert feed.requests() - before == 59
    assert {p["company_name"] for k, p in feed.stored().items() if k != "R0000"} == {"Moved Ltd"}
