"""The sync DAG run with dag.test(): skipped until live, then only what changed, then drift."""

from __future__ import annotations

import pytest
from airflow.dag_processing.dagbag import DagBag

from bench.datagen import exhibitors
from grip.api import ClientSettings, GripClient
from grip.config import load_integration
from grip.ledger import Ledger, Stage
from grip.sync import record_decision, run_stage
from tests.dags.conftest import ROOT, airflow_connection

pytestmark = pytest.mark.integration


def _task_states(dag_run) -> dict[str, str]:
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session

    with create_session() as session:
        rows = session.query(TaskInstance).filter(
            TaskInstance.dag_id == dag_run.dag_id, TaskInstance.run_id == dag_run.run_id
        )
        return {ti.task_id: str(ti.state) for ti in rows if ti.map_index in (-1, 0)}


def _sync_dag(name: str):
    bag = DagBag(dag_folder=str(ROOT / "dags"))
    assert bag.import_errors == {}
    return bag.dags[f"grip_{name}_sync"]


def test_sync_dag_skips_until_live_then_pushes_only_changes_and_stops_on_drift(
    airflow_home, integration_folder, sandbox, tmp_path, monkeypatch
):
    name = "dagsync"
    path = integration_folder.write_integration(name)
    drop = integration_folder.drop / f"{name}_exhibitors_20261201.csv"
    rows = exhibitors(30, bad_share=0.0)
    rows.to_csv(drop, index=False)
    ledger_file = tmp_path / "ledger.sqlite"
    airflow_connection(
        monkeypatch, "grip_default", conn_type="grip", host=sandbox.base_url, password=sandbox.token
    )
    airflow_connection(monkeypatch, "grip_ledger", conn_type="sqlite", host=str(ledger_file))

    # not onboarded: the sync is skipped, not failed, and sends nothing
    run = _sync_dag(name).test()
    assert str(run.state) == "success"
    states = _task_states(run)
    assert states["check_live"] == "success"
    assert states["plan_sync"] == "skipped"
    assert sandbox.stats()["requests"] == 0

    # onboarding through the engine: sample, approval, full import
    integration = load_integration(path)
    settings = ClientSettings(base_url=sandbox.base_url, token=sandbox.token)
    with Ledger(f"sqlite:///{ledger_file}") as ledger, GripClient(settings) as client:
        run_stage(integration, "sample", client=client, ledger=ledger)
        record_decision(name, True, "pm@example.com", "looks right", ledger=ledger)
        full = run_stage(integration, "full", client=client, ledger=ledger)
        assert ledger.integration(name).stage is Stage.LIVE
    # the full import sends what the sample did not: every row of the drop is in Grip
    assert full.counts["created"] == len(rows) - 10
    assert len(sandbox.profiles()) == len(rows)
    before = sandbox.stats()["requests"]

    # live, nothing changed: a sync run sends nothing
    run = _sync_dag(name).test()
    assert str(run.state) == "success"
    assert _task_states(run)["finish_sync"] == "success"
    assert sandbox.stats()["requests"] == before

    # one changed row: exactly one request
    rows.loc[rows.index[3], "job_title"] = "Head of Partnerships"
    rows.to_csv(drop, index=False)
    run = _sync_dag(name).test()
    assert str(run.state) == "success"
    assert sandbox.stats()["requests"] == before + 1
    changed = [p for p in sandbox.profiles() if p["registration_id"] == rows.iloc[3]["reg_id"]]
    assert changed[0]["job_title"] == "Head of Partnerships"
    before = sandbox.stats()["requests"]

    # a changed mapping: the sync stops with a clear message and sends nothing
    mapping = integration_folder.mappings / "exhibitor.yaml"
    mapping.write_text(
        mapping.read_text().replace(
            "collapse_spaces], required: true}", "collapse_spaces, title], required: true}", 1
        )
    )
    run = _sync_dag(name).test()
    assert str(run.state) == "failed"
    assert _task_states(run)["plan_sync"] == "failed"
    assert sandbox.stats()["requests"] == before
    with Ledger(f"sqlite:///{ledger_file}") as ledger:
        assert ledger.integration(name).stage is Stage.LIVE
