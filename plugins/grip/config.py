"""Integration files (include/integrations/*.yaml): one partner feed for one event."""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator

from grip.sources.config import SourceConfig
from grip.yamlfile import load_model

_NAME = re.compile(r"^[a-z][a-z0-9_]{0,49}$")
_LANGUAGE = re.compile(r"^[a-z]{2,3}(-[a-z0-9]{2,8})*$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DataTypeSpec(_Strict):
    """One data type of an integration: where its rows come from and how they map."""

    mapping: str
    source: SourceConfig


class ApplicationSpec(_Strict):
    """What Grip has configured for the event's application."""

    languages: list[str] = Field(min_length=1)
    location_code: str = "en-gb"
    type_ids: dict[str, int] = Field(default_factory=dict)
    container_ids: list[int] = Field(default_factory=list)

    @field_validator("languages")
    @classmethod
    def _lower_case_codes(cls, value: list[str]) -> list[str]:
        for code in value:
            if not _LANGUAGE.match(code):
                raise ValueError(
                    f"language code {code!r} must be written lower case, like 'en-gb' or 'ru-ru'"
                )
        return value


class LimitsSpec(_Strict):
    """How hard the integration may push and how many bad rows a run may tolerate."""

    max_reject_share: float = Field(default=0.05, ge=0, le=1)
    concurrency: int = Field(default=8, ge=1, le=128)
    rate_limit: float | None = Field(default=None, gt=0)
    adaptive_rate: bool = True
    chunk_size: int = Field(default=5_000, ge=1)


class IntegrationSpec(_Strict):
    """A whole integration file, validated strictly on load.

    Relative paths (mappings, translation tables, local files) are resolved against the
    folder of the integration file.
    """

    name: str
    event: str = ""
    application: ApplicationSpec
    data_types: dict[str, DataTypeSpec] = Field(min_length=1)
    grip_conn_id: str = "grip_default"
    ledger_conn_id: str = "grip_ledger"
    ledger_url: str | None = None
    """Ledger database outside Airflow (SQLAlchemy URL); ``GRIP_LEDGER_URL`` overrides it and
    without either a SQLite file ``var/ledger.sqlite`` is used. Airflow uses ``ledger_conn_id``."""
    schedule: str | None = "@daily"
    sample_size: int = Field(default=25, ge=10, le=50)
    limits: LimitsSpec = LimitsSpec()
    report_dir: str | None = None

    @field_validator("name")
    @classmethod
    def _identifier(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError(
                f"name {value!r} must be lower case letters, digits and '_', starting with a "
                "letter (it becomes part of the DAG ids)"
            )
        return value


class Integration:
    """A loaded integration file together with where it lives."""

    def __init__(self, path: Path, spec: IntegrationSpec):
        self.path = path
        self.spec = spec

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def folder(self) -> Path:
        return self.path.parent

    def resolve(self, relative: str) -> Path:
        """Resolve a path written in the file against the file's own folder."""
        candidate = Path(relative)
        return candidate if candidate.is_absolute() else (self.folder / candidate).resolve()

    def mapping_path(self, data_type: str) -> Path:
        return self.resolve(self.spec.data_types[data_type].mapping)


def load_integration(path: Path | str) -> Integration:
    """Load and validate one integration file; raise ConfigError naming file, key and line."""
    path = Path(path).resolve()
    _, spec = load_model(path, IntegrationSpec)
    return Integration(path, spec)
