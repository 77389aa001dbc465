"""Sources: partner SQL databases, SFTP drops and local files, read in chunks."""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path
from typing import Any

from grip.sources.base import (
    ROW_INDEX_NAME,
    SOURCE_FILE_ATTR,
    Source,
    SourceFile,
    SourceReject,
)
from grip.sources.config import (
    FileSourceConfig,
    SftpSourceConfig,
    SourceConfig,
    SqlSourceConfig,
)

__all__ = [
    "ROW_INDEX_NAME",
    "SOURCE_FILE_ATTR",
    "FileSourceConfig",
    "SftpSourceConfig",
    "Source",
    "SourceConfig",
    "SourceFile",
    "SourceReject",
    "SqlSourceConfig",
    "build_source",
]


def build_source(
    config: SourceConfig,
    *,
    base_dir: Path | None = None,
    engine: Any = None,
    sftp_client: Any = None,
    processed: Collection[SourceFile] | Collection[str] = (),
    watermark: Any = None,
    required_columns: Collection[str] | None = None,
) -> Source:
    """Build the source an integration file describes.

    Outside Airflow a SQL source connects with its ``url`` and an SFTP source with its
    ``host`` settings; inside Airflow, ``grip.airflow.sources`` builds the engine or SFTP
    client from the connection id and passes it here.

    Args:
        config: The ``source:`` block of a data type in an integration file.
        base_dir: Folder against which a relative local path is resolved (the integration
            file's folder).
        engine: A SQLAlchemy engine to use instead of ``url`` (the caller disposes of it).
        sftp_client: An open ``paramiko.SFTPClient`` to use instead of ``host`` (the caller
            closes it, or registers that with :meth:`Source.on_close`).
        processed: Files the ledger already holds, as :class:`SourceFile` records or names;
            such files are not read again.
        watermark: For an incremental SQL read, the largest cursor value of the last run.
        required_columns: Columns the mapping reads; a table or file lacking one raises
            SourceError before any row is handed on.

    Returns:
        A :class:`Source`, not yet opened: use it in a ``with`` block.

    Raises:
        ConfigError: The settings cannot work together (for example no engine and no url).
    """
    if isinstance(config, SqlSourceConfig):
        from grip.sources.sql import SqlSource

        return SqlSource(
            config, engine=engine, watermark=watermark, required_columns=required_columns
        )
    if isinstance(config, SftpSourceConfig):
        from grip.sources.sftp import SftpSource

        return SftpSource(
            config,
            client=sftp_client,
            processed=processed,
            required_columns=required_columns,
        )
    from grip.sources.files import FileSource

    return FileSource(
        config, base_dir=base_dir, processed=processed, required_columns=required_columns
    )
