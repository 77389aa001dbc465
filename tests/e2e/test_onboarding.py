"""The product end to end on a real Airflow: sample, approval or rejection, full import, sync."""

from __future__ import annotations

import csv
import json
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import pytest

from tests.e2e.conftest import CHUNK_SIZE, E2EWorld, PartnerFeed

if TYPE_CHECKING:
    import pandas as pd

    from tests.harness.airflow import AirflowClient, AirflowStack
    from tests.harness.sandbox import SandboxServer

# NOTE: the harness is imported inside the tests, after pytest has registered it as a plugin.
pytestmark = pytest.mark.e2e

T = TypeVar("T")

TYPE_IDS = {"visitor": 380, "exhibitor": 381}
APPROVE_COMMENT = "Checked with the partner: names, e-mails and categories look right."
REJECT_COMMENT = "Company names are missing on too many exhibitors; fix the export first."
ADMIN = "admin"
REJECT_SAMPLE_SIZE = 12
"""The rejected onboarding is triggered with this sample size (its file says another)."""

# The bad rows bench.datagen writes, and the filters of the demo mappings, spelled out here
# without the product's code: what validation must set aside and what the filters leave out.
BROKEN_EMAILS = ("no-at-sign.example.com", "broken@")
LONG_JOB_TITLE = 100
UNKNOWN_CATEGORY = "ZZZ"
IMPOSSIBLE_DATE = "31/02/2026"
FILTERED_STATUSES = ("cancelled", "canceled", "void")
TEST_FLAGS = ("1", "true", "yes", "y")


def _poll(what: str, probe: Callable[[], T | None], timeout: float, interval: float = 1.0) -> T:
    deadline = time.monotonic() + timeout
    while True:
        result = probe()
        if result is not None:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}", pytrace=False)
        time.sleep(interval)


def _text(frame: pd.DataFrame, column: str) -> pd.Series:
    return frame[column].fillna("").astype(str).str.strip()


def _spoiled(frame: pd.DataFrame, data_type: str) -> tuple[pd.Series, pd.Series]:
    """Return masks of the rows the mapping's filters leave out and of those validation rejects."""
    filtered = _text(frame, "status").str.lower().isin(FILTERED_STATUSES) | _text(
        frame, "is_test"
    ).str.lower().isin(TEST_FLAGS)
    bad = (
        _text(frame, "email").isin(BROKEN_EMAILS)
        | frame["reg_id"].str.contains(ADMIN, case=False)
        | (_text(frame, "last_name") == "")
        | (_text(frame, "job_title").str.len() > LONG_JOB_TITLE)
        | _text(frame, "categories").str.upper().str.contains(UNKNOWN_CATEGORY)
    )
    if data_type == "exhibitor":
        bad |= _text(frame, "company") == ""
    else:
        bad |= _text(frame, "registered_on") == IMPOSSIBLE_DATE
    # a repeated key: the first row that is not filtered goes on, the later ones are rejected
    kept = frame.loc[~filtered, "reg_id"]
    repeated = kept.duplicated(keep="first").reindex(frame.index, fill_value=False)
    return filtered, (bad | repeated) & ~filtered


def _frames(feed: PartnerFeed) -> dict[str, pd.DataFrame]:
    return {"visitor": feed.visitors, "exhibitor": feed.exhibitors}


def _expected(feed: PartnerFeed) -> dict[str, Any]:
    """What the sandbox must hold after the full import, worked out from the source rows alone."""
    valid: dict[str, set[str]] = {}
    rejected: set[tuple[str, int]] = set()
    filtered_count = 0
    for data_type, frame in _frames(feed).items():
        filtered, bad = _spoiled(frame, data_type)
        filtered_count += int(filtered.sum())
        valid[data_type] = set(frame.loc[~filtered & ~bad, "reg_id"])
        rejected |= {(data_type, int(row)) for row in frame.index[bad]}
    read = sum(len(frame) for frame in _frames(feed).values())
    return {
        "read": read,
        "filtered": filtered_count,
        "invalid": len(rejected),
        "valid": valid,
        "valid_count": sum(len(ids) for ids in valid.values()),
        "rejected_rows": rejected,
    }


def _profiles(sandbox: SandboxServer, feed: PartnerFeed) -> dict[str, set[str]]:
    """The registration ids the sandbox holds for the feed's integration, by data type."""
    names = {type_id: data_type for data_type, type_id in TYPE_IDS.items()}
    found: dict[str, set[str]] = {data_type: set() for data_type in TYPE_IDS}
    for profile in sandbox.profiles():
        if profile["registration_id"].startswith(feed.prefix):
            found[names[profile["type_id"]]].add(profile["registration_id"])
    return found


def _names(feed: PartnerFeed) -> dict[str, tuple[str, str]]:
    """First and last name of each valid record, as the source holds them (spaces collapsed)."""
    names: dict[str, tuple[str, str]] = {}
    for data_type, frame in _frames(feed).items():
        filtered, bad = _spoiled(frame, data_type)
        for row in frame[~filtered & ~bad].itertuples():
            names[row.reg_id] = (" ".join(row.first_name.split()), " ".join(row.last_name.split()))
    return names


def _pushes(sandbox: SandboxServer) -> list[dict[str, Any]]:
    """Every push (``POST /thing/register``) the sandbox answered, oldest first."""
    return [line for line in reversed(sandbox.log(10_000)) if line["method"] == "POST"]


def _rejects_csv(report_dir: str) -> list[dict[str, str]]:
    with (Path(report_dir) / "rejects.csv").open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def _summary(report_dir: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((Path(report_dir) / "summary.json").read_text("utf-8"))
    return data


def _ledger(world: E2EWorld, name: str) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """The integration's row and its decisions, read with plain SQL from the ledger database."""
    import sqlalchemy as sa

    engine = sa.create_engine(world.ledger_url)
    try:
        with engine.connect() as conn:
            row = (
                conn.execute(
                    sa.text("SELECT * FROM grip_integrations WHERE name = :name"), {"name": name}
                )
                .mappings()
                .first()
            )
            decisions = (
                conn.execute(
                    sa.text("SELECT * FROM grip_decisions WHERE integration = :name ORDER BY id"),
                    {"name": name},
                )
                .mappings()
                .all()
            )
    finally:
        engine.dispose()
    return (dict(row) if row else None), [dict(d) for d in decisions]


def _runs(client: AirflowClient, dag_id: str) -> list[dict[str, Any]]:
    response = client.request("GET", f"/dags/{dag_id}/dagRuns", params={"limit": 100})
    return list(response.json()["dag_runs"])


def _sync_and_wait(client: AirflowClient, feed: PartnerFeed) -> tuple[str, dict[str, Any]]:
    run_id = client.trigger(feed.sync_dag)
    client.wait_run(feed.sync_dag, run_id, ["success"], timeout=300)
    return run_id, client.task_states(feed.sync_dag, run_id)


@pytest.fixture(scope="module")
def e2e(airflow_stack: AirflowStack, e2e_world: E2EWorld) -> AirflowClient:
    """The stack with both integrations' DAGs parsed, an empty sandbox, the main sync unpaused.

    The main integration's sync is unpaused before its onboarding, so that go-live's Asset
    update starts a sync run by itself.
    """
    client = airflow_stack.client
    for feed in e2e_world.feeds.values():
        for dag_id in (feed.onboarding_dag, feed.sync_dag):
            client.wait_dag_parsed(dag_id, timeout=180)
    errors = [e for e in client.import_errors() if e["bundle_name"] == "dags-folder"]
    assert errors == []
    client.unpause(e2e_world.feeds["e2e_main"].sync_dag)
    e2e_world.sandbox.reset(settings=True)
    return client


@pytest.mark.timeout(1200)
def test_main_onboarding_sample_is_approved_and_every_valid_record_is_imported(
    e2e: AirflowClient, e2e_world: E2EWorld
):
    client, sandbox = e2e, e2e_world.sandbox
    feed = e2e_world.feeds["e2e_main"]
    expected = _expected(feed)
    dag = feed.onboarding_dag
    assert expected["invalid"] > 0, "the partner data must hold bad rows for this test to mean much"

    run_id = client.trigger(dag)
    client.wait_task_state(dag, run_id, "review_sample", "awaiting_input", timeout=300)

    # the sample is in Grip, and nothing more
    sample = client.xcom(dag, run_id, "push_sample")
    sampled = _profiles(sandbox, feed)
    sampled_ids = sampled["visitor"] | sampled["exhibitor"]
    assert len(sampled_ids) == feed.sample_size
    assert sampled["visitor"], "the sample covers both data types"
    assert sampled["exhibitor"], "the sample covers both data types"
    for data_type, ids in sampled.items():
        assert ids <= expected["valid"][data_type]
    assert len(_pushes(sandbox)) == feed.sample_size
    assert sample["status"] == "succeeded"
    assert sample["counts"]["created"] == feed.sample_size

    # the approval page shows the sample report in Markdown
    detail = client.hitl_details(dag, run_id, "review_sample")
    assert (
        detail["subject"]
        == f"Grip sample of E2E Travel Expo ({feed.name}): approve the full import?"
    )
    assert detail["options"] == ["Approve", "Reject"]
    assert detail["response_received"] is False
    assert "comment" in detail["params"]
    body = detail["body"]
    assert body == sample["review"]
    assert body.startswith(f"# Run {sample['run_id']} of {feed.name}: sample, succeeded\n")
    where = f"\n\nFull report, with every reject and the Data Docs: `{sample['report_dir']}`\n\n"
    assert where in body
    assert (Path(sample["report_dir"]) / "summary.md").is_file()
    assert len(_rejects_csv(sample["report_dir"])) == expected["invalid"]
    assert f"| mappings fingerprint | `{sample['fingerprint'][:16]}` |" in body
    assert "## Counts" in body
    assert f"| rows read from the source | {expected['read']:,} |" in body
    assert f"| left out by the mapping's filters | {expected['filtered']:,} |" in body
    assert f"| rejected by validation (and duplicates) | {expected['invalid']:,} |" in body
    assert f"| created in Grip | {feed.sample_size} |" in body
    assert "## Validation rejects by reason" in body
    for reason in ("email_format: email: '…' is not an e-mail address", "unique_key"):
        assert reason in body
    assert "'broken@'" not in body, "values stay out of the reasons table"
    assert "### Read back from Grip" in body
    assert f"All {feed.sample_size} accepted records read back exactly as sent." in body
    assert "## Payload preview" in body
    assert body.count("```json") == feed.sample_size
    for registration_id in sampled_ids:
        assert f"\n### {registration_id}\n" in body
    assert "## Time per step" not in body

    # approve as the Required Actions page does, with a comment
    answer = client.answer_hitl(
        dag, run_id, "review_sample", ["Approve"], {"comment": APPROVE_COMMENT}
    )
    assert answer["chosen_options"] == ["Approve"]
    client.wait_run(dag, run_id, ["success"], timeout=420)

    states = client.task_states(dag, run_id)
    chunks = client.xcom(dag, run_id, "plan_full")
    pushes = {k: v for k, v in states.items() if k.startswith("push_full[")}
    assert {k: v for k, v in states.items() if k not in pushes} == {
        "push_sample": "success",
        "review_sample": "success",
        "plan_full": "success",
        "finish_full": "success",
        "go_live": "success",
    }
    to_import = expected["valid_count"] - feed.sample_size
    assert len(chunks) == math.ceil(to_import / CHUNK_SIZE) >= 2
    assert pushes == {f"push_full[{i}]": "success" for i in range(len(chunks))}
    assert {
        ti["pool"] for ti in client.task_instances(dag, run_id) if ti["task_id"] == "push_full"
    } == {"grip_api"}

    # the sandbox holds exactly the valid records of the source
    held = _profiles(sandbox, feed)
    for data_type in TYPE_IDS:
        source_ids = set(_frames(feed)[data_type]["reg_id"])
        assert held[data_type] <= source_ids, f"{data_type}: ids Grip holds that the source lacks"
        assert held[data_type] == expected["valid"][data_type]
    assert (
        sum(map(len, held.values()))
        == expected["read"] - expected["filtered"] - expected["invalid"]
    )
    names = _names(feed)
    for profile in sandbox.profiles():
        if profile["registration_id"].startswith(feed.prefix):
            expected_name = names[profile["registration_id"]]
            assert (profile["first_name"], profile["last_name"]) == expected_name
            assert profile["name"] == " ".join(expected_name)
    pushes_done = _pushes(sandbox)
    assert len(pushes_done) == expected["valid_count"], "each valid record is pushed once"
    assert {line["status"] for line in pushes_done} == {200}

    # the full run's report agrees, and its rejects are the bad rows of the source
    full = client.xcom(dag, run_id, "finish_full")
    summary = _summary(full["report_dir"])
    assert full["status"] == summary["status"] == "succeeded"
    counts = summary["counts"]
    assert counts["read"] == expected["read"]
    assert counts["filtered"] == expected["filtered"]
    assert counts["invalid"] == expected["invalid"]
    assert (counts["created"], counts["updated"], counts["rejected"], counts["failed"]) == (
        to_import,
        0,
        0,
        0,
    )
    rejects = _rejects_csv(full["report_dir"])
    assert {(r["data_type"], int(r["source_row"])) for r in rejects} == expected["rejected_rows"]
    everything = set().union(*held.values())
    for reject in rejects:
        frame = _frames(feed)[reject["data_type"]]
        assert frame.loc[int(reject["source_row"]), "reg_id"] == reject["registration_id"]
        if not reject["reasons"].startswith("unique_key"):
            assert reject["registration_id"] not in everything

    # the ledger: live, approved by the admin with the comment, on the sample's fingerprint
    state, decisions = _ledger(e2e_world, feed.name)
    assert state is not None
    assert state["stage"] == "live"
    assert state["decided_by"] == ADMIN
    assert state["decision_comment"] == APPROVE_COMMENT
    assert state["approved_fingerprint"] == state["sample_fingerprint"] == sample["fingerprint"]
    assert state["sample_run_id"] == sample["run_id"]
    assert state["live_since"] is not None
    assert [(d["approved"], d["decided_by"], d["comment"]) for d in decisions] == [
        (True, ADMIN, APPROVE_COMMENT)
    ]
    from grip.config import load_integration
    from grip.sync import integration_fingerprint

    assert state["approved_fingerprint"] == integration_fingerprint(load_integration(feed.path))
    detail = client.hitl_details(dag, run_id, "review_sample")
    assert detail["chosen_options"] == ["Approve"]
    assert detail["params_input"] == {"comment": APPROVE_COMMENT}
    assert detail["responded_by_user"]["name"] == ADMIN


@pytest.mark.timeout(900)
def test_main_sync_runs_on_go_live_then_sends_nothing_until_one_row_changes(
    e2e: AirflowClient, e2e_world: E2EWorld
):
    import sqlalchemy as sa

    client, sandbox = e2e, e2e_world.sandbox
    feed = e2e_world.feeds["e2e_main"]
    expected = _expected(feed)
    state, _ = _ledger(e2e_world, feed.name)
    if state is None or state["stage"] != "live":
        pytest.fail(f"{feed.name} is not live: its onboarding test did not complete", pytrace=False)

    # go-live updated the Asset: a sync run started by itself, and sent nothing
    def asset_run() -> dict[str, Any] | None:
        runs = [r for r in _runs(client, feed.sync_dag) if r["run_type"] == "asset_triggered"]
        return runs[0] if runs else None

    first = _poll(f"the asset-triggered run of {feed.sync_dag}", asset_run, timeout=120)
    client.wait_run(feed.sync_dag, first["dag_run_id"], ["success"], timeout=300)
    assert len(_pushes(sandbox)) == expected["valid_count"]
    finished = client.xcom(feed.sync_dag, first["dag_run_id"], "finish_sync")
    assert (finished["counts"]["created"], finished["counts"]["updated"]) == (0, 0)

    # a triggered sync with nothing changed sends no request at all
    before = sandbox.stats()["requests"]
    run_id, states = _sync_and_wait(client, feed)
    assert states["check_live"] == "success"
    assert states["plan_sync"] == "success"
    assert states["finish_sync"] == "success"
    assert sandbox.stats()["requests"] == before
    assert client.xcom(feed.sync_dag, run_id, "plan_sync") == []

    # one row changes in the partner database: the next sync sends exactly that record
    frame = feed.visitors
    filtered, bad = _spoiled(frame, "visitor")
    unique = ~frame["reg_id"].duplicated(keep=False)
    candidates = frame[~filtered & ~bad & unique & (frame["job_title"] != "Head of Partnerships")]
    changed = str(candidates["reg_id"].iloc[0])
    engine = sa.create_engine(e2e_world.partner_url)
    try:
        with engine.begin() as conn:
            updated = conn.execute(
                sa.text(f"UPDATE {feed.table} SET job_title = :title WHERE reg_id = :id"),
                {"title": "Head of Partnerships", "id": changed},
            )
            assert updated.rowcount == 1
    finally:
        engine.dispose()
    before = sandbox.stats()["requests"]
    run_id, states = _sync_and_wait(client, feed)
    assert sandbox.stats()["requests"] == before + 1
    last = _pushes(sandbox)[-1]
    assert (last["registration_id"], last["status"]) == (changed, 200)
    assert states["push_sync[0]"] == "success"
    finished = client.xcom(feed.sync_dag, run_id, "finish_sync")
    assert (finished["counts"]["created"], finished["counts"]["updated"]) == (0, 1)
    [profile] = [p for p in sandbox.profiles() if p["registration_id"] == changed]
    assert profile["job_title"] == "Head of Partnerships"


@pytest.mark.timeout(900)
def test_rejected_sample_stops_the_onboarding_and_its_sync_is_skipped(
    e2e: AirflowClient, e2e_world: E2EWorld
):
    client, sandbox = e2e, e2e_world.sandbox
    feed = e2e_world.feeds["e2e_reject"]
    dag = feed.onboarding_dag
    assert _profiles(sandbox, feed) == {"visitor": set(), "exhibitor": set()}

    run_id = client.trigger(dag, {"sample_size": REJECT_SAMPLE_SIZE})
    client.wait_task_state(dag, run_id, "review_sample", "awaiting_input", timeout=300)
    assert client.xcom(dag, run_id, "push_sample")["counts"]["created"] == REJECT_SAMPLE_SIZE
    client.answer_hitl(dag, run_id, "review_sample", ["Reject"], {"comment": REJECT_COMMENT})
    client.wait_run(dag, run_id, ["success"], timeout=300)

    states = client.task_states(dag, run_id)
    assert states == {
        "push_sample": "success",
        "review_sample": "success",
        "plan_full": "skipped",
        "push_full": "skipped",
        "finish_full": "skipped",
        "go_live": "skipped",
    }
    state, decisions = _ledger(e2e_world, feed.name)
    assert state is not None
    assert state["stage"] == "sample_rejected"
    assert state["decided_by"] == ADMIN
    assert state["decision_comment"] == REJECT_COMMENT
    assert state["approved_fingerprint"] is None
    assert state["live_since"] is None
    assert [(d["approved"], d["decided_by"], d["comment"]) for d in decisions] == [
        (False, ADMIN, REJECT_COMMENT)
    ]
    held = _profiles(sandbox, feed)
    assert sum(map(len, held.values())) == REJECT_SAMPLE_SIZE, "nothing beyond the sample"

    # its sync runs, and is skipped rather than failed: nothing is sent
    before = sandbox.stats()["requests"]
    run_id, states = _sync_and_wait(client, feed)
    assert states == {
        "check_live": "success",
        "plan_sync": "skipped",
        "push_sync": "skipped",
        "finish_sync": "skipped",
    }
    assert sandbox.stats()["requests"] == before
    assert _ledger(e2e_world, feed.name)[0]["stage"] == "sample_rejected"
