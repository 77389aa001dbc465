"""Running a whole stage in one process, for the command line and tests."""

from __future__ import annotations

import logging
import os
from collections.abc import Collection
from pathlib import Path
from typing import TYPE_CHECKING, Any

from grip.config import Integration
from grip.engine.archive import archive_run_files
from grip.engine.common import open_ledger
from grip.engine.finish import dry_run_report, fail_quietly, finish_run
from grip.engine.prepare import SourceBuilder, prepare_run
from grip.engine.progress import NoProgress, Progress
from grip.engine.push import push_chunk
from grip.errors import ConfigError
from grip.ledger import Ledger
from grip.report import RunReport

if TYPE_CHECKING:
    from grip.api import ClientSettings, GripClient

log = logging.getLogger(__name__)


def run_stage(
    integration: Integration,
    stage: str,
    *,
    dry_run: bool = False,
    client: GripClient | None = None,
    client_settings: ClientSettings | None = None,
    ledger: Ledger | None = None,
    progress: Progress | None = None,
    sample_size: int | None = None,
    sample_data_types: Collection[str] | None = None,
    source_builder: SourceBuilder | None = None,
    engine: Any = None,
    sftp_client: Any = None,
    work_root: Path | None = None,
    report_root: Path | None = None,
    label: str | None = None,
) -> RunReport:
    """Run a whole stage in this process: prepare, push every chunk, finish.

    Args:
        integration: the loaded integration file.
        stage: ``sample``, ``full`` or ``sync``.
        dry_run: plan only: nothing is sent and the ledger is not changed.
        client: an open Grip client; otherwise one is built from ``client_settings`` when
            there is anything to push.
        client_settings: how to reach Grip when no client is given.
        ledger: the ledger; :func:`open_ledger` for the integration if None.
        progress: progress receiver (a progress bar in the CLI).
        sample_size, sample_data_types, source_builder, engine, sftp_client, work_root,
        report_root, label:
            as for :func:`prepare_run`.

    Returns:
        The run's report (also written to its report folder).
    """
    own_ledger = ledger is None
    ledger = ledger or open_ledger(integration)
    progress = progress or NoProgress()
    try:
        plan = prepare_run(
            integration,
            stage,
            ledger=ledger,
            dry_run=dry_run,
            sample_size=sample_size,
            sample_data_types=sample_data_types,
            source_builder=source_builder,
            engine=engine,
            sftp_client=sftp_client,
            work_root=work_root,
            report_root=report_root,
            label=label,
            progress=progress,
            pid=os.getpid(),
        )
        if plan.run_id is None:
            return dry_run_report(plan)
        owned: GripClient | None = None
        try:
            if client is None and plan.to_push:
                client = owned = _new_client(client_settings)
            progress.start("push", plan.to_push)
            for chunk in plan.chunks:
                assert client is not None
                push_chunk(plan.run_id, chunk.chunk_no, client, ledger=ledger, progress=progress)
            progress.finish("push")
            report = finish_run(plan.run_id, ledger=ledger, client=client)
        except BaseException as err:
            fail_quietly(ledger, plan.run_id, err)
            raise
        finally:
            if owned is not None:
                owned.close()
        archive_run_files(integration, plan.run_id, ledger=ledger, source_builder=source_builder)
        return report
    finally:
        if own_ledger:
            ledger.close()


def _new_client(settings: ClientSettings | None) -> GripClient:
    from grip.api import GripClient

    if settings is None:
        raise ConfigError(
            "there are records to push but no Grip connection: give the base URL and the token "
            "(GRIP_BASE_URL and GRIP_TOKEN for the command line)"
        )
    return GripClient(settings)
