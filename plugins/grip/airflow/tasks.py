"""What the DAGs' tasks do: thin calls from Airflow into the sync engine.

Each function takes plain values (an integration file path, run and chunk numbers), opens what
it needs from Airflow connections (the ledger, the Grip client, the partner sources), calls the
engine and returns something small and JSON-ready for XCom.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from grip.config import Integration, load_integration

if TYPE_CHECKING:
    from grip.api import GripClient
    from grip.ledger import Ledger
    from grip.report import RunReport

log = logging.getLogger(__name__)

LEDGER_URL_EXTRA = "sqlalchemy_url"


@contextmanager
def open_ledger(integration: Integration) -> Iterator[Ledger]:
    """The ledger of an integration, reached through its ``ledger_conn_id`` connection.

    The connection is any database connection (PostgreSQL in the docker stack, SQLite for a
    local run); migrations are applied on open. When the connection is not defined, the
    integration file's ``ledger_url`` or ``GRIP_LEDGER_URL`` is used instead.
    """
    from grip.airflow.sources import sql_engine
    from grip.errors import SourceError
    from grip.ledger import Ledger
    from grip.sync import open_ledger as open_local_ledger

    conn_id = integration.spec.ledger_conn_id
    try:
        engine = sql_engine(conn_id)
    except SourceError as err:
        if "is not defined" not in str(err):
            raise
        log.info("connection %s is not defined: using the ledger URL of the settings", conn_id)
        ledger = open_local_ledger(integration)
        try:
            yield ledger
        finally:
            ledger.close()
        return
    # the ledger makes its own engine from the URL, with its settings (WAL and a busy timeout
    # on SQLite, pre-ping on servers); the provider's engine only resolved the connection
    url = engine.url
    engine.dispose()
    ledger = Ledger(url)
    try:
        yield ledger
    finally:
        ledger.close()


def grip_client(integration: Integration) -> GripClient:
    """A Grip client from the integration's ``grip_conn_id``, with its push limits applied."""
    from grip.airflow.hook import GripHook

    limits = integration.spec.limits
    hook = GripHook(
        integration.spec.grip_conn_id,
        concurrency=limits.concurrency,
        rate_limit=limits.rate_limit,
        adaptive=limits.adaptive_rate,
    )
    return hook.get_conn()


def _source_builder(config: Any, **kwargs: Any) -> Any:
    from grip.airflow.sources import build_source_from_airflow

    kwargs.pop("engine", None)
    kwargs.pop("sftp_client", None)
    return build_source_from_airflow(config, **kwargs)


def prepare(
    path: str,
    stage: str,
    *,
    label: str,
    sample_size: int | None = None,
    sample_data_types: list[str] | None = None,
) -> dict[str, Any]:
    """Read, map, validate and plan a stage; return its run id and the chunks to push."""
    from grip.sync import prepare_run

    integration = load_integration(path)
    with open_ledger(integration) as ledger:
        plan = prepare_run(
            integration,
            stage,
            ledger=ledger,
            sample_size=sample_size,
            sample_data_types=sample_data_types,
            source_builder=_source_builder,
            label=label,
        )
    counts = plan.counts
    log.info(
        "%s run %s of %s: read %d rows, filtered %d, rejected %d by validation; "
        "%d to push in %d chunk(s); report will be in %s",
        stage,
        plan.run_id,
        integration.name,
        counts.get("read", 0),
        counts.get("filtered", 0),
        counts.get("invalid", 0),
        plan.to_push,
        len(plan.chunks),
        plan.report_dir,
    )
    return {
        "run_id": plan.run_id,
        "chunks": [{"run_id": plan.run_id, "chunk_no": c.chunk_no} for c in plan.chunks],
        "to_push": plan.to_push,
        "report_dir": str(plan.report_dir),
    }


def push(path: str, run_id: int, chunk_no: int) -> dict[str, Any]:
    """Push one chunk of a run; outcomes reach the ledger as they arrive."""
    from grip.sync import push_chunk

    integration = load_integration(path)
    with open_ledger(integration) as ledger, grip_client(integration) as client:
        result = push_chunk(run_id, chunk_no, client, ledger=ledger)
        stats = client.stats.as_dict()
    rate = (result.created + result.updated) / result.seconds if result.seconds else 0.0
    log.info(
        "run %d chunk %d: created %d, updated %d, rejected %d, failed %d in %.1f s (%.1f/s); "
        "%d requests, %d retries, %d throttled",
        run_id,
        chunk_no,
        result.created,
        result.updated,
        result.rejected,
        result.failed,
        result.seconds,
        rate,
        stats["requests"],
        stats["retries"],
        stats["throttled"],
    )
    return {
        "chunk_no": chunk_no,
        "created": result.created,
        "updated": result.updated,
        "rejected": result.rejected,
        "failed": result.failed,
        "stats": stats,
    }


def finish(path: str, run_id: int, *, read_back: bool = False) -> dict[str, Any]:
    """Close a run: totals, status, the integration's stage, the report; archive its files."""
    from grip.engine.archive import archive_run_files
    from grip.sync import finish_run

    integration = load_integration(path)
    with open_ledger(integration) as ledger:
        if read_back:
            with grip_client(integration) as client:
                report = finish_run(run_id, ledger=ledger, client=client)
        else:
            report = finish_run(run_id, ledger=ledger)
        archive_run_files(integration, run_id, ledger=ledger, source_builder=_source_builder)
    _log_report(report)
    result: dict[str, Any] = {
        "run_id": run_id,
        "status": report.status,
        "counts": report.counts,
        "report_dir": report.report_dir,
    }
    if report.stage == "sample":
        result["review"] = review_markdown(report)
        result["fingerprint"] = report.fingerprint
    return result


def review_markdown(report: RunReport) -> str:
    """The approval page's body: the sample report with, under its title, where the full one is."""
    from grip.report import approval_markdown

    body = approval_markdown(report)
    if not report.report_dir:
        return body
    title, _, rest = body.partition("\n\n")
    where = f"Full report, with every reject and the Data Docs: `{report.report_dir}`"
    return f"{title}\n\n{where}\n\n{rest}"


def _log_report(report: RunReport) -> None:
    counts = report.counts
    log.info(
        "%s run %s of %s %s: created %d, updated %d, unchanged %d, rejected by validation %d, "
        "rejected by Grip %d, failed %d",
        report.stage,
        report.run_id,
        report.integration,
        report.status,
        counts.get("created", 0),
        counts.get("updated", 0),
        counts.get("planned_unchanged", 0),
        counts.get("invalid", 0),
        counts.get("api_rejected", 0),
        counts.get("failed", 0),
    )
    for reason, count in sorted(report.validation_reasons.items(), key=lambda kv: -kv[1])[:5]:
        log.info("  validation: %d x %s", count, reason)
    for reason, count in sorted(report.api_reasons.items(), key=lambda kv: -kv[1])[:5]:
        log.info("  Grip: %d x %s", count, reason)


def decide(
    path: str, *, approved: bool, by: str, comment: str | None, fingerprint: str | None
) -> dict[str, Any]:
    """Record the project manager's decision on the latest sample in the ledger."""
    from grip.sync import record_decision

    integration = load_integration(path)
    with open_ledger(integration) as ledger:
        state = record_decision(integration.name, approved, by, comment, fingerprint, ledger=ledger)
    log.info("sample of %s %s by %s", integration.name, "approved" if approved else "rejected", by)
    return {"stage": state.stage.value, "decided_by": state.decided_by}


def go_live(path: str) -> dict[str, Any]:
    """Mark the integration live; its recurring sync runs from now on."""
    from grip.sync import go_live as mark_live

    integration = load_integration(path)
    with open_ledger(integration) as ledger:
        state = mark_live(integration.name, ledger=ledger)
    log.info(
        "%s is live since %s with mappings %s",
        integration.name,
        state.live_since,
        (state.approved_fingerprint or "")[:12],
    )
    return {"stage": state.stage.value, "approved_fingerprint": state.approved_fingerprint}


def live_state(path: str) -> tuple[bool, str]:
    """Whether the integration's sync may run, and why not when it may not."""
    from grip.ledger import Stage

    integration = load_integration(path)
    with open_ledger(integration) as ledger:
        state = ledger.integration(integration.name)
    if state is None:
        return False, f"{integration.name} has no sample yet: run its onboarding DAG first"
    if state.stage is not Stage.LIVE:
        return False, f"{integration.name} is at stage {state.stage.value}, not live"
    return True, "live"
