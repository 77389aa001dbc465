"""After a run: move the drop files it read to their data type's archive folder."""

from __future__ import annotations

import logging
from typing import Any

from grip.config import Integration
from grip.engine.prepare import SourceBuilder
from grip.errors import GripError
from grip.ledger import Ledger

log = logging.getLogger(__name__)


def archive_run_files(
    integration: Integration,
    run_id: int,
    *,
    ledger: Ledger,
    source_builder: SourceBuilder | None = None,
) -> dict[str, list[str]]:
    """Move the files a run read to ``archive_folder``, once they count as processed.

    Files count as processed when the run committed them (see :func:`finish_run`: not for a
    sample, a failed run or one with failed records, whose files the next sync must read
    again). Only data types whose source sets ``archive_folder`` are touched. A file that
    cannot be moved stays where it is and is logged; it is processed all the same, so it is
    not read twice.

    Returns:
        The archived paths by data type.
    """
    from grip.sources import build_source

    builder = source_builder or build_source
    run = ledger.run(run_id)
    read = ledger.run_files(run_id)
    moved: dict[str, list[str]] = {}
    for data_type in sorted({f.data_type for f in read}):
        spec = integration.spec.data_types.get(data_type)
        config: Any = spec.source if spec is not None else None
        if config is None or not getattr(config, "archive_folder", None):
            continue
        committed = {f.name for f in ledger.processed_files(run.integration, data_type)}
        names = [f.name for f in read if f.data_type == data_type and f.name in committed]
        if not names:
            continue
        try:
            with builder(config, base_dir=integration.folder) as source:
                moved[data_type] = source.archive_files(names)
        except (GripError, OSError):
            log.exception("run %d: the %s files stay in the drop folder", run_id, data_type)
    return moved
