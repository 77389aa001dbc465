"""The e2e harness drives a real Airflow: HITL approvals answered through the REST API."""

from __future__ import annotations

import json
import uuid
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from tests.harness.airflow import AirflowClient, AirflowStack

# NOTE: the harness is imported inside the tests, after pytest has registered it as a plugin
# (and so rewritten its asserts); importing it here first would make pytest warn.
pytestmark = pytest.mark.e2e

APPROVAL_DAG = "harness_approval"
MAPPED_DAG = "harness_mapped_approval"
SETTINGS_DAG = "harness_settings"

# Written into the stack's scratch bundle, never into the project's dags/.
DAG_SOURCE = '''
"""DAGs that exercise the e2e harness: one approval gate, and a mapped one."""

from __future__ import annotations

import json
from pathlib import Path

from airflow.providers.standard.operators.hitl import ApprovalOperator
from airflow.sdk import DAG, Param, task

with DAG(dag_id="harness_approval", schedule=None, catchup=False, tags=["e2e"]):
    approve = ApprovalOperator(
        task_id="approve_sample",
        subject="Approve the sample of run {{ run_id }}?",
        body="| records | rejects |\\n| ---: | ---: |\\n| 12 | 1 |",
        params={"comment": Param("", type="string", description="Why")},
    )

    @task
    def write_marker(**context):
        decision = context["ti"].xcom_pull(task_ids="approve_sample")
        marker = Path(context["dag_run"].conf["marker"])
        record = {"run_id": context["run_id"], "decision": decision}
        marker.write_text(json.dumps(record, default=str))
        return str(marker)

    approve >> write_marker()

with DAG(dag_id="harness_mapped_approval", schedule=None, catchup=False, tags=["e2e"]):
    ApprovalOperator.partial(task_id="review", subject="Review a data type").expand(
        body=["visitors", "exhibitors"]
    )

with DAG(dag_id="harness_settings", schedule=None, catchup=False, tags=["e2e"]):

    @task
    def read_settings():
        from airflow.sdk import BaseHook, Variable

        conn = BaseHook.get_connection("harness_partner_db")
        return {
            "host": conn.host,
            "port": conn.port,
            "extra": conn.extra_dejson,
            "limits": Variable.get("harness_limits", deserialize_json=True),
        }

    read_settings.override(pool="harness_pool")()
'''


@pytest.fixture(scope="module")
def harness_dags(airflow_stack: AirflowStack) -> AirflowClient:
    path = airflow_stack.write_dag("harness_dags.py", DAG_SOURCE)
    client = airflow_stack.client
    for dag_id in (APPROVAL_DAG, MAPPED_DAG, SETTINGS_DAG):
        client.wait_dag_parsed(dag_id, timeout=90, fileloc=path)
    return client


@pytest.mark.timeout(420)
def test_stack_is_healthy_and_configured(airflow_stack: AirflowStack, harness_dags):
    client = airflow_stack.client
    health = client.health()
    assert health["scheduler"]["status"] == "healthy"
    assert health["dag_processor"]["status"] == "healthy"
    assert client.pools()["grip_api"] == 4
    assert [e for e in client.import_errors() if e["bundle_name"] == "e2e-scratch"] == []
    assert harness_dags.dag(APPROVAL_DAG)["bundle_name"] == "e2e-scratch"
    assert client.dag("no_such_dag") is None


@pytest.mark.timeout(300)
def test_approved_sample_lets_the_downstream_task_run(harness_dags: AirflowClient, tmp_path):
    client = harness_dags
    marker = tmp_path / "approved.json"
    run_id = client.trigger(APPROVAL_DAG, {"marker": str(marker)})

    waiting = client.wait_task_state(APPROVAL_DAG, run_id, "approve_sample", "awaiting_input", 120)
    assert waiting["state"] == "awaiting_input"
    detail = client.hitl_details(APPROVAL_DAG, run_id, "approve_sample")
    assert detail["subject"] == f"Approve the sample of run {run_id}?"
    assert detail["options"] == ["Approve", "Reject"]
    assert detail["response_received"] is False
    assert not marker.exists()

    answer = client.answer_hitl(
        APPROVAL_DAG, run_id, "approve_sample", ["Approve"], {"comment": "looks right"}
    )
    assert answer["chosen_options"] == ["Approve"]

    client.wait_run(APPROVAL_DAG, run_id, ["success"], timeout=120)
    states = client.task_states(APPROVAL_DAG, run_id)
    assert states == {"approve_sample": "success", "write_marker": "success"}
    written = json.loads(marker.read_text())
    assert written["run_id"] == run_id
    assert written["decision"]["chosen_options"] == ["Approve"]
    assert written["decision"]["params_input"] == {"comment": "looks right"}
    assert client.xcom(APPROVAL_DAG, run_id, "write_marker") == str(marker)
    assert client.xcom(APPROVAL_DAG, run_id, "approve_sample")["chosen_options"] == ["Approve"]


@pytest.mark.timeout(300)
def test_rejected_sample_skips_the_downstream_task(harness_dags: AirflowClient, tmp_path):
    client = harness_dags
    marker = tmp_path / "rejected.json"
    run_id = client.trigger(
        APPROVAL_DAG, {"marker": str(marker)}, run_id=f"reject_{uuid.uuid4().hex[:8]}"
    )

    client.wait_task_state(APPROVAL_DAG, run_id, "approve_sample", "awaiting_input", 120)
    client.answer_hitl(
        APPROVAL_DAG, run_id, "approve_sample", ["Reject"], {"comment": "wrong mapping"}
    )

    client.wait_run(APPROVAL_DAG, run_id, ["success"], timeout=120)
    states = client.task_states(APPROVAL_DAG, run_id)
    assert states == {"approve_sample": "success", "write_marker": "skipped"}
    assert not marker.exists()
    detail = client.hitl_details(APPROVAL_DAG, run_id, "approve_sample")
    assert detail["response_received"] is True
    assert detail["chosen_options"] == ["Reject"]
    assert detail["params_input"] == {"comment": "wrong mapping"}
    assert detail["responded_by_user"]["name"] == "admin"
    from tests.harness.airflow import StackError

    with pytest.raises(StackError, match="already been updated"):
        client.answer_hitl(APPROVAL_DAG, run_id, "approve_sample", ["Approve"])


@pytest.mark.timeout(300)
def test_mapped_approvals_are_answered_one_map_index_at_a_time(harness_dags: AirflowClient):
    client = harness_dags
    run_id = client.trigger(MAPPED_DAG)

    for index in (0, 1):
        client.wait_task_state(MAPPED_DAG, run_id, "review", "awaiting_input", 120, map_index=index)
    assert client.hitl_details(MAPPED_DAG, run_id, "review", map_index=1)["body"] == "exhibitors"
    client.answer_hitl(MAPPED_DAG, run_id, "review", ["Approve"], map_index=0)
    client.answer_hitl(MAPPED_DAG, run_id, "review", ["Reject"], map_index=1)

    client.wait_run(MAPPED_DAG, run_id, ["success"], timeout=120)
    chosen = [
        client.hitl_details(MAPPED_DAG, run_id, "review", map_index=index)["chosen_options"]
        for index in (0, 1)
    ]
    assert chosen == [["Approve"], ["Reject"]]


@pytest.mark.timeout(300)
def test_connections_variables_and_pools_set_at_runtime_reach_the_tasks(harness_dags):
    client = harness_dags
    client.set_connection(
        "harness_partner_db", "postgres", host="partner.example", port=5433, extra={"a": 1}
    )
    client.set_variable("harness_limits", {"max_reject_share": 0.05})
    client.set_pool("harness_pool", 2)
    client.set_pool("harness_pool", 3)
    assert client.pools()["harness_pool"] == 3

    run_id = client.trigger(SETTINGS_DAG)
    client.wait_run(SETTINGS_DAG, run_id, ["success"], timeout=120)
    assert client.xcom(SETTINGS_DAG, run_id, "read_settings") == {
        "host": "partner.example",
        "port": 5433,
        "extra": {"a": 1},
        "limits": {"max_reject_share": 0.05},
    }
    [ti] = client.task_instances(SETTINGS_DAG, run_id)
    assert ti["pool"] == "harness_pool"


@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda c: c.trigger("no_such_dag"), r"PATCH /api/v2/dags/no_such_dag answered 404"),
        (
            lambda c: c.answer_hitl(APPROVAL_DAG, "no_such_run", "approve_sample"),
            r"answered 404: .*was not found",
        ),
        (
            lambda c: c.wait_dag_parsed("no_such_dag", timeout=2),
            r"timed out after 2 s waiting for DAG 'no_such_dag' to be parsed",
        ),
    ],
)
def test_client_errors_name_the_request_and_what_was_expected(harness_dags, call, match):
    from tests.harness.airflow import StackError

    with pytest.raises(StackError, match=match):
        call(harness_dags)
