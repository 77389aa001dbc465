"""Typed settings of each kind of source, as written under ``source:`` in an integration file."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SqlSourceConfig(_Strict):
    """A table or query in a partner database.

    Inside Airflow the database is reached through ``conn_id``; outside it through ``url``
    (a SQLAlchemy URL). Exactly one of ``table`` and ``query`` is given.
    """

    kind: Literal["sql"]
    conn_id: str | None = None
    url: str | None = None
    table: str | None = None
    query: str | None = None
    schema_: str | None = Field(default=None, alias="schema")
    chunk_size: int = Field(default=50_000, gt=0)
    cursor_column: str | None = None

    @model_validator(mode="after")
    def _one_origin_one_relation(self) -> SqlSourceConfig:
        if (self.conn_id is None) == (self.url is None):
            raise ValueError("give exactly one of conn_id (inside Airflow) and url (outside it)")
        if (self.table is None) == (self.query is None):
            raise ValueError("give exactly one of table and query")
        return self


FileFormat = Literal["auto", "csv", "xlsx", "json", "ndjson"]


class _FileSettings(_Strict):
    format: FileFormat = "auto"
    encoding: str | None = None
    delimiter: str | None = None
    sheet: str | None = None
    chunk_size: int = Field(default=50_000, gt=0)


class SftpSourceConfig(_FileSettings):
    """Files dropped on an SFTP server: a folder, a glob pattern and which files to take."""

    kind: Literal["sftp"]
    conn_id: str | None = None
    host: str | None = None
    port: int = 22
    username: str | None = None
    key_file: str | None = None
    known_hosts: str | None = None
    folder: str
    pattern: str = "*"
    select: Literal["newest", "unprocessed"] = "newest"
    archive_folder: str | None = None
    max_bytes: int = Field(default=2 * 1024**3, gt=0)

    @model_validator(mode="after")
    def _one_origin(self) -> SftpSourceConfig:
        if (self.conn_id is None) == (self.host is None):
            raise ValueError("give exactly one of conn_id (inside Airflow) and host (outside it)")
        return self


class FileSourceConfig(_FileSettings):
    """A local file or folder, for the demo and for partners who mount a share."""

    kind: Literal["file"]
    path: str
    pattern: str = "*"
    select: Literal["newest", "unprocessed"] = "newest"


SourceConfig = Annotated[
    SqlSourceConfig | SftpSourceConfig | FileSourceConfig, Field(discriminator="kind")
]
