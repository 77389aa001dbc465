"""Typed settings of each kind of source, as written under ``source:`` in an integration file."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]*$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class SqlSourceConfig(_Strict):
    """A table or query in a partner database.

    Inside Airflow the database is reached through ``conn_id``; outside it through ``url``
    (a SQLAlchemy URL; write the password in it only for a local database, or point at an
    environment variable with ``url_env``). Exactly one of ``table`` and ``query`` is given.

    ``cursor_column`` turns on incremental reads: only rows whose cursor value is at least the
    watermark the caller keeps are read, in cursor order. ``method`` chooses how rows travel:
    ``auto`` uses PostgreSQL's ``COPY`` where every column type survives it, a server-side
    cursor elsewhere; ``cursor`` and ``copy`` force one way.
    """

    kind: Literal["sql"]
    conn_id: str | None = None
    url: str | None = None
    url_env: str | None = None
    table: str | None = None
    query: str | None = None
    schema_: str | None = Field(default=None, alias="schema")
    chunk_size: int = Field(default=50_000, gt=0)
    cursor_column: str | None = None
    method: Literal["auto", "cursor", "copy"] = "auto"

    @model_validator(mode="after")
    def _one_origin_one_relation(self) -> SqlSourceConfig:
        origins = [self.conn_id, self.url, self.url_env]
        if sum(o is not None for o in origins) != 1:
            raise ValueError(
                "give exactly one of conn_id (inside Airflow), url or url_env (outside it)"
            )
        if (self.table is None) == (self.query is None):
            raise ValueError("give exactly one of table and query")
        return self

    @field_validator("table", "schema_", "cursor_column")
    @classmethod
    def _plain_identifier(cls, value: str | None) -> str | None:
        if value is not None and not _IDENTIFIER.match(value):
            raise ValueError(
                f"{value!r} is not a plain name (letters, digits, '_'); for anything more, "
                "write a query"
            )
        return value


FileFormat = Literal["auto", "csv", "xlsx", "json", "ndjson"]


class _FileSettings(_Strict):
    format: FileFormat = "auto"
    encoding: str | None = None
    delimiter: str | None = Field(default=None, min_length=1, max_length=1)
    sheet: str | None = None
    chunk_size: int = Field(default=50_000, gt=0)
    pattern: str = "*"
    select: Literal["newest", "unprocessed"] = "newest"
    archive_folder: str | None = None


class SftpSourceConfig(_FileSettings):
    """Files dropped on an SFTP server: a folder, a glob pattern and which files to take.

    Inside Airflow the server is reached through ``conn_id`` (an SFTP connection whose extra
    gives ``host_key``, or ``known_hosts``, a file of known hosts); outside it through
    ``host``, ``port``, ``username``, ``key_file`` or the password in the environment variable
    named by ``password_env``, with the server's key in ``host_key`` or ``known_hosts``.
    """

    kind: Literal["sftp"]
    conn_id: str | None = None
    host: str | None = None
    port: int = Field(default=22, gt=0, lt=65536)
    username: str | None = None
    key_file: str | None = None
    password_env: str | None = None
    host_key: str | None = None
    known_hosts: str | None = None
    folder: str
    settle_seconds: float = Field(default=5.0, ge=0)
    max_bytes: int = Field(default=2 * 1024**3, gt=0)
    temp_dir: str | None = None
    timeout: float = Field(default=30.0, gt=0)

    @model_validator(mode="after")
    def _one_origin(self) -> SftpSourceConfig:
        if (self.conn_id is None) == (self.host is None):
            raise ValueError("give exactly one of conn_id (inside Airflow) and host (outside it)")
        if self.host is not None and self.username is None:
            raise ValueError("give username with host")
        return self


class FileSourceConfig(_FileSettings):
    """A local file or folder, for the demo and for partners who mount a share.

    ``path`` names one file, or a folder whose files matching ``pattern`` are read. On a
    share a partner writes to, set ``settle_seconds`` so that a file still being written is
    left for the next run.
    """

    kind: Literal["file"]
    path: str
    settle_seconds: float = Field(default=0.0, ge=0)


SourceConfig = Annotated[
    SqlSourceConfig | SftpSourceConfig | FileSourceConfig, Field(discriminator="kind")
]
