"""The DAG files import cleanly, build the expected DAGs, report broken files and stay cheap."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from datetime import timedelta

import pytest
from airflow.dag_processing.dagbag import DagBag

from grip.airflow.dags import POOL
from grip.airflow.operators import SampleApprovalOperator
from tests.dags.conftest import ROOT

DAGS = ROOT / "dags"


def dagbag() -> DagBag:
    return DagBag(dag_folder=str(DAGS))


def test_every_dag_file_imports_and_the_demo_gets_its_two_dags():
    bag = dagbag()
    assert bag.import_errors == {}
    assert {"grip_demo_onboarding", "grip_demo_sync"} <= set(bag.dag_ids)


def test_onboarding_runs_sample_approval_full_import_and_go_live_in_order():
    dag = dagbag().dags["grip_demo_onboarding"]
    assert type(dag.timetable).__name__ == "NullTimetable"  # manual trigger only
    assert dag.max_active_runs == 1
    params = dag.params.dump()
    assert params["sample_size"] == 25
    sample_size = dag.params.get_param("sample_size")
    assert sample_size.schema == {"type": "integer", "minimum": 10, "maximum": 50}
    assert "10 to 50" in sample_size.description
    data_types = dag.params.get_param("data_types")
    assert data_types.value == ["visitor", "exhibitor", "representative"]
    assert data_types.schema["items"]["enum"] == ["visitor", "exhibitor", "representative"]
    review = dag.get_task("review_sample")
    assert isinstance(review, SampleApprovalOperator)
    assert review.options == ["Approve", "Reject"]
    assert "comment" in review.params
    assert dag.get_task("push_sample").downstream_task_ids == {"review_sample"}
    assert review.downstream_task_ids == {"plan_full"}
    assert dag.get_task("plan_full").downstream_task_ids == {"push_full"}
    assert dag.get_task("push_full").downstream_task_ids == {"finish_full"}
    assert dag.get_task("finish_full").downstream_task_ids == {"go_live"}
    assert [o.name for o in dag.get_task("go_live").outlets] == ["grip_demo_live"]
    for task_id in ("push_sample", "push_full"):
        assert dag.get_task(task_id).pool == POOL


def test_sync_runs_on_its_cron_and_on_go_live_one_run_at_a_time():
    dag = dagbag().dags["grip_demo_sync"]
    assert dag.max_active_runs == 1
    assert type(dag.timetable).__name__ == "AssetOrTimeSchedule"
    assert dag.timetable.timetable.expression == "0 0 * * *"  # @daily in demo.yaml
    assert [a.name for a in dag.timetable.asset_condition.objects] == ["grip_demo_live"]
    assert dag.get_task("check_live").downstream_task_ids == {"plan_sync"}
    push = dag.get_task("push_sync")
    assert push.pool == POOL
    for task in dag.tasks:
        assert task.retries >= 1 or task.task_id == "check_live"
        assert task.on_failure_callback
    assert push.execution_timeout == timedelta(hours=4)
    assert dag.get_task("finish_sync").trigger_rule == "all_done"


def test_a_broken_integration_file_is_an_import_error_that_hides_no_other(integration_folder):
    integration_folder.write_integration("good_one")
    broken = integration_folder.integrations / "broken.yaml"
    broken.write_text("name: broken\napplication:\n  languages: [en-gb]\n  colour: blue\n")
    bag = dagbag()
    assert {"grip_good_one_onboarding", "grip_good_one_sync"} <= set(bag.dag_ids)
    assert not any("broken" in dag_id for dag_id in bag.dag_ids)
    errors = {path.rsplit("/", 1)[-1]: text for path, text in bag.import_errors.items()}
    assert set(errors) == {"grip_integration_errors.py"}
    message = errors["grip_integration_errors.py"]
    assert f"{broken}:4: application.colour: unknown key" in message
    assert "data_types: required key is missing" in message


def test_two_files_with_one_name_are_reported(integration_folder):
    integration_folder.write_integration("twin")
    (integration_folder.integrations / "twin_copy.yaml").write_text(
        (integration_folder.integrations / "twin.yaml").read_text()
    )
    bag = dagbag()
    assert "grip_twin_sync" in bag.dag_ids
    (message,) = bag.import_errors.values()
    assert "name 'twin' is already used" in message


PARSE_PROBE = textwrap.dedent(
    """
    import json, runpy, socket, sys
    from airflow.sdk import DAG, task  # what any DAG file pays anyway
    before = set(sys.modules)
    def refuse(*args, **kwargs):
        raise AssertionError("a DAG file opened a network connection at parse time")
    socket.socket.connect = refuse
    socket.create_connection = refuse
    runpy.run_path(sys.argv[1])
    tops = {name.split(".")[0] for name in before}
    print(json.dumps(sorted({n.split(".")[0] for n in set(sys.modules) - before} - tops)))
    """
)
HEAVY = (
    "pandas",
    "numpy",
    "pyarrow",
    "sqlalchemy",
    "great_expectations",
    "requests",
    "paramiko",
    "psycopg2",
    "pymysql",
    "openpyxl",
)


@pytest.mark.parametrize("dag_file", sorted(p.name for p in DAGS.glob("*.py")))
def test_parsing_a_dag_file_loads_no_heavy_library_and_opens_no_connection(dag_file):
    result = subprocess.run(
        [sys.executable, "-c", PARSE_PROBE, str(DAGS / dag_file)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    loaded = json.loads(result.stdout.strip().splitlines()[-1])
    heavy = sorted({m.split(".")[0] for m in loaded} & set(HEAVY))
    assert heavy == [], f"{dag_file} imports {heavy} at parse time"
