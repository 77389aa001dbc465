"""What the commands share: reading the first rows of a source and printing with rich."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from grip.errors import ConfigError

if TYPE_CHECKING:
    import pandas as pd

    from grip.config import Integration
    from grip.sources.config import SourceConfig


def console(stderr: bool = False) -> Any:
    """A rich console (imported when a command runs, not when the parser is built)."""
    from rich.console import Console

    return Console(stderr=stderr, soft_wrap=True)


def file_source(path: Path) -> SourceConfig:
    """Source settings for one local file (CSV, XLSX, JSON or NDJSON; the format is guessed)."""
    from grip.sources.config import FileSourceConfig

    return FileSourceConfig(kind="file", path=str(Path(path).resolve()))


def data_type_of(integration: Integration, data_type: str | None) -> str:
    """The data type a command works on: the one named, or the integration's only one."""
    known = list(integration.spec.data_types)
    if data_type is None:
        if len(known) == 1:
            return known[0]
        raise ConfigError(f"{integration.path}: name the data type, one of {', '.join(known)}")
    if data_type not in known:
        raise ConfigError(
            f"{integration.path}: no data type {data_type!r}; the integration has "
            f"{', '.join(known)}"
        )
    return data_type


def read_rows(
    config: SourceConfig,
    *,
    base_dir: Path,
    limit: int | None,
    url: str | None = None,
) -> tuple[pd.DataFrame, str]:
    """Read the first ``limit`` rows (all without a limit) of a source, through grip.sources.

    Only the first file of a drop is read, so that the row numbers stay those of one file.

    Returns:
        The rows (indexed by source row number) and the source's description.
    """
    import pandas as pd

    from grip.sources import build_source
    from grip.sources.config import SqlSourceConfig

    updates: dict[str, Any] = {}
    if limit:
        updates["chunk_size"] = min(config.chunk_size, max(limit, 1))
    if url is not None:
        if not isinstance(config, SqlSourceConfig):
            raise ConfigError("--url applies to SQL sources only")
        updates |= {"url": url, "conn_id": None}
    if updates:
        config = config.model_copy(update=updates)
    frames: list[pd.DataFrame] = []
    count = 0
    with build_source(config, base_dir=base_dir) as source:
        first_file = None
        for frame in source.chunks():
            name = frame.attrs.get("source_file")
            first_file = name if first_file is None else first_file
            if name != first_file:
                break
            frames.append(frame)
            count += len(frame)
            if limit and count >= limit:
                break
        described = source.describe()
    if not frames:
        return pd.DataFrame(), described
    rows = pd.concat(frames) if len(frames) > 1 else frames[0]
    return (rows.iloc[:limit] if limit else rows), described
