"""The DAG builder: for each integration file, an onboarding DAG and a sync DAG.

Building a DAG reads only the integration file (YAML and pydantic): no database, no network
and no heavy library is touched until a task runs.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from airflow.sdk import DAG, Asset, Param, get_current_context, task

from grip.airflow import tasks
from grip.airflow.operators import SampleApprovalOperator
from grip.config import Integration, load_integration
from grip.errors import ConfigError

log = logging.getLogger(__name__)

POOL = "grip_api"
"""Every task that talks to Grip runs in this pool, so all workers together keep its limit."""

INTEGRATIONS_ENV = "GRIP_INTEGRATIONS_DIR"
START_DATE = datetime(2026, 1, 1, tzinfo=UTC)

FailureCallback = Callable[[Any], None]


def integrations_dir(dags_folder: Path) -> Path:
    """``GRIP_INTEGRATIONS_DIR``, or ``include/integrations`` beside the dags folder."""
    configured = os.environ.get(INTEGRATIONS_ENV)
    return Path(configured) if configured else dags_folder.parent / "include" / "integrations"


def integration_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.glob("*.y*ml") if p.suffix in {".yaml", ".yml"})


def load_all(folder: Path) -> tuple[list[Integration], list[str]]:
    """Load every integration file; return the good ones and a message for each broken one."""
    good: list[Integration] = []
    broken: list[str] = []
    names: dict[str, Path] = {}
    for path in integration_files(folder):
        try:
            integration = load_integration(path)
        except ConfigError as err:
            broken.append(str(err))
            continue
        if integration.name in names:
            broken.append(
                f"{path}: name {integration.name!r} is already used by {names[integration.name]}; "
                "each integration needs its own name (it becomes part of the DAG ids)"
            )
            continue
        names[integration.name] = path
        good.append(integration)
    return good, broken


def live_asset(name: str) -> Asset:
    """The Asset the onboarding updates when the integration goes live."""
    return Asset(name=f"grip_{name}_live", uri=f"grip://integrations/{name}/live")


def log_failure(context: Any) -> None:
    """Failure callback: one clear summary line of what failed, where, and why."""
    ti = context.get("task_instance") or context.get("ti")
    error = context.get("exception")
    log.error(
        "grip-sync task failed: dag %s, run %s, task %s (try %s): %s",
        getattr(ti, "dag_id", "?"),
        context.get("run_id", "?"),
        getattr(ti, "task_id", "?"),
        getattr(ti, "try_number", "?"),
        f"{type(error).__name__}: {error}" if error else "see the task log",
    )


def _default_args(callbacks: Sequence[FailureCallback]) -> dict[str, Any]:
    return {
        "owner": "grip-sync",
        "retries": 2,
        "retry_delay": timedelta(minutes=1),
        "retry_exponential_backoff": True,
        "on_failure_callback": [log_failure, *callbacks],
    }


def _refused(error: Exception) -> Exception:
    """A stage refusal fails the task at once: retrying cannot change the ledger's answer."""
    from airflow.sdk.exceptions import AirflowFailException

    return AirflowFailException(str(error))


def _stage_tasks(path: str, stage: str) -> Any:
    """prepare >> push (one mapped task a chunk, in the grip_api pool) >> finish."""
    from grip.errors import StageRefusedError

    plan_id = f"plan_{stage}"

    @task(task_id=plan_id, execution_timeout=timedelta(hours=3))
    def plan() -> list[dict[str, int]]:
        context = get_current_context()
        try:
            planned = tasks.prepare(path, stage, label=str(context["run_id"]))
        except Exception as err:
            # tells finish that planning ran and failed (rather than never ran)
            context["ti"].xcom_push(key="error", value=f"{type(err).__name__}: {err}")
            if isinstance(err, StageRefusedError):
                raise _refused(err) from err
            raise
        context["ti"].xcom_push(key="run_id", value=planned["run_id"])
        return planned["chunks"]

    @task(
        task_id=f"push_{stage}",
        pool=POOL,
        execution_timeout=timedelta(hours=4),
        map_index_template="chunk {{ task.op_kwargs['chunk']['chunk_no'] }}",
    )
    def push(chunk: dict[str, int]) -> dict[str, Any]:
        return tasks.push(path, chunk["run_id"], chunk["chunk_no"])

    @task(
        task_id=f"finish_{stage}", trigger_rule="all_done", execution_timeout=timedelta(minutes=30)
    )
    def finish() -> dict[str, Any]:
        from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

        ti = get_current_context()["ti"]
        run_id = ti.xcom_pull(task_ids=plan_id, key="run_id")
        if run_id is None:
            error = ti.xcom_pull(task_ids=plan_id, key="error")
            if error is None:  # planning never ran: an earlier task failed, that one says why
                raise AirflowSkipException(f"the {stage} run was not planned")
            raise AirflowFailException(
                f"the {stage} run could not be planned, nothing was pushed: {error}"
            )
        result = tasks.finish(path, int(run_id))
        if result["status"] == "failed":
            raise AirflowFailException(
                f"{stage} run {run_id} failed; its report is in {result['report_dir']}"
            )
        return result

    planned = plan()
    finished = finish()
    push.expand(chunk=planned) >> finished
    return planned, finished


def build_onboarding(integration: Integration, callbacks: Sequence[FailureCallback] = ()) -> DAG:
    """``grip_<name>_onboarding``: sample, approval in the Airflow UI, full import, go-live."""
    spec = integration.spec
    path = str(integration.path)
    name = integration.name
    asset = live_asset(name)
    with DAG(
        dag_id=f"grip_{name}_onboarding",
        description=f"Onboard {spec.event or name} into Grip: sample, approval, full import",
        schedule=None,
        start_date=START_DATE,
        catchup=False,
        max_active_runs=1,
        default_args=_default_args(callbacks),
        tags=["grip", name, "onboarding"],
        params={
            "sample_size": Param(
                spec.sample_size,
                type="integer",
                minimum=10,
                maximum=50,
                description="records in the sample Grip's project manager reviews (10 to 50)",
            ),
            "data_types": Param(
                list(spec.data_types),
                type="array",
                items={"type": "string", "enum": list(spec.data_types)},
                minItems=1,
                uniqueItems=True,
                description="data types the sample is drawn from (all of them are imported)",
            ),
        },
        doc_md=(
            f"Onboarding of **{name}** ({integration.path.name}): push a sample, wait for the "
            "project manager's approval on the Required Actions page, import every record, go live."
        ),
    ) as dag:

        @task(pool=POOL, execution_timeout=timedelta(hours=1), retries=0)
        def push_sample() -> dict[str, Any]:
            context = get_current_context()
            params = context["params"]
            plan = tasks.prepare(
                path,
                "sample",
                label=str(context["run_id"]),
                sample_size=int(params["sample_size"]),
                sample_data_types=list(params["data_types"]),
            )
            for chunk in plan["chunks"]:
                tasks.push(path, chunk["run_id"], chunk["chunk_no"])
            result = tasks.finish(path, plan["run_id"], read_back=True)
            if result["status"] == "failed":
                from airflow.sdk.exceptions import AirflowFailException

                raise AirflowFailException(
                    f"sample run {plan['run_id']} failed; report in {result['report_dir']}"
                )
            return result

        review = SampleApprovalOperator(
            task_id="review_sample",
            integration_path=path,
            subject=f"Grip sample of {spec.event or name}: approve the full import?",
            body="{{ ti.xcom_pull(task_ids='push_sample')['review'] }}",
            fingerprint="{{ ti.xcom_pull(task_ids='push_sample')['fingerprint'] }}",
            # NOTE: a rejection must skip finish_full and go_live too, whose trigger rules would
            # otherwise run them (and fail them) once the full import's plan is skipped
            ignore_downstream_trigger_rules=True,
            params={
                "comment": Param(
                    "",
                    type=["null", "string"],
                    description="your comment, kept in the ledger with the decision",
                ),
            },
            retries=0,
        )

        planned, finished = _stage_tasks(path, "full")

        @task(outlets=[asset])
        def go_live() -> dict[str, Any]:
            return tasks.go_live(path)

        push_sample() >> review >> planned
        finished >> go_live()
    return dag


def build_sync(integration: Integration, callbacks: Sequence[FailureCallback] = ()) -> DAG:
    """``grip_<name>_sync``: on the schedule and on go-live, push what changed."""
    from airflow.sdk import AssetOrTimeSchedule, CronTriggerTimetable

    spec = integration.spec
    path = str(integration.path)
    name = integration.name
    asset = live_asset(name)
    schedule: Any = [asset]
    if spec.schedule:
        schedule = AssetOrTimeSchedule(
            timetable=CronTriggerTimetable(spec.schedule, timezone="UTC"), assets=[asset]
        )
    with DAG(
        dag_id=f"grip_{name}_sync",
        description=f"Keep {spec.event or name} in sync with Grip: push what changed",
        schedule=schedule,
        start_date=START_DATE,
        catchup=False,
        max_active_runs=1,
        default_args=_default_args(callbacks),
        tags=["grip", name, "sync"],
        doc_md=(
            f"Recurring sync of **{name}** ({integration.path.name}), schedule "
            f"`{spec.schedule}` and each go-live. Skipped while the integration is not live; "
            "fails with a clear message when the mappings changed since the approved sample."
        ),
    ) as dag:

        @task.short_circuit(ignore_downstream_trigger_rules=True)
        def check_live() -> bool:
            live, why = tasks.live_state(path)
            if not live:
                log.info("sync of %s skipped: %s", name, why)
            return live

        planned, _ = _stage_tasks(path, "sync")
        check_live() >> planned
    return dag


def build_all(
    folder: Path, callbacks: Sequence[FailureCallback] = ()
) -> tuple[list[DAG], list[str]]:
    """Build both DAGs of every good integration file in ``folder``; list the broken files."""
    integrations, broken = load_all(folder)
    dags = []
    for integration in integrations:
        dags.append(build_onboarding(integration, callbacks))
        dags.append(build_sync(integration, callbacks))
    return dags, broken
