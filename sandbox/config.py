"""Start settings of the sandbox: applications (token, languages, types, containers), faults."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from grip.errors import ConfigError
from grip.yamlfile import load_model

DEMO_APPLICATION_ID = 7001
DEMO_APPLICATION_NAME = "Demo Expo"
DEMO_TOKEN = "sandbox-demo-token"
DEMO_LANGUAGES = ("en-gb", "ru-ru")
DEMO_TYPES = {380: "Visitor", 381: "Exhibitor", 382: "Representative"}
DEMO_CONTAINER = 90001

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8900
DEFAULT_DB = ":memory:"

RetryAfter = Literal["seconds", "date", "none"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Application(_Strict):
    """One Grip application (an event) as the sandbox serves it.

    Attributes:
        id: Application id, the first half of the upsert key.
        name: Shown on the sandbox page.
        token: Bearer token that selects this application.
        languages: Enabled language codes, lower case (``en-gb``).
        types: Known data types, ``type_id`` to name.
        containers: Known containers; the first is used when a push names none.
    """

    id: int = Field(gt=0)
    name: str = Field(min_length=1)
    token: str = Field(min_length=1)
    languages: tuple[str, ...] = Field(min_length=1)
    types: dict[int, str] = Field(min_length=1)
    containers: tuple[int, ...] = Field(min_length=1)

    @field_validator("languages")
    @classmethod
    def _lower_languages(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        lowered = tuple(code.strip().lower() for code in value)
        if any(not code for code in lowered):
            raise ValueError("a language code is empty; write codes like en-gb")
        return lowered

    @property
    def default_container(self) -> int:
        """The container a push joins when it sends no ``default_container_id``."""
        return self.containers[0]


class FaultSettings(_Strict):
    """Fault and load switches; the same keys as ``POST /_sandbox/settings``.

    Attributes:
        latency_ms: Time from an API request's arrival to its answer, the sandbox's work included.
        jitter_ms: Extra delay drawn uniformly from 0 to this value.
        rate_limit_rps: Requests per second let through; None switches the limit off.
        rate_limit_burst: Requests that may arrive at once before the limit bites.
        retry_after: What a 429 carries: delay in seconds, an HTTP date, or no header.
        retry_after_seconds: The delay a 429 announces.
        error_500_share: Share of API requests answered 500.
        error_502_share: Share answered 502.
        error_503_share: Share answered 503.
        drop_share: Share whose connection is closed without any answer.
        slow_share: Share of handled requests whose answer is held back by ``slow_ms``.
        slow_ms: How long a slow answer is held back.
        seed: Seed of the fault draws; None draws from the system's entropy.
    """

    latency_ms: float = Field(default=0.0, ge=0, allow_inf_nan=False)
    jitter_ms: float = Field(default=0.0, ge=0, allow_inf_nan=False)
    rate_limit_rps: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    rate_limit_burst: int = Field(default=1, ge=1)
    retry_after: RetryAfter = "seconds"
    retry_after_seconds: float = Field(default=1.0, ge=0, allow_inf_nan=False)
    error_500_share: float = Field(default=0.0, ge=0, le=1)
    error_502_share: float = Field(default=0.0, ge=0, le=1)
    error_503_share: float = Field(default=0.0, ge=0, le=1)
    drop_share: float = Field(default=0.0, ge=0, le=1)
    slow_share: float = Field(default=0.0, ge=0, le=1)
    slow_ms: float = Field(default=0.0, ge=0, allow_inf_nan=False)
    seed: int | None = None

    @model_validator(mode="after")
    def _shares_fit(self) -> FaultSettings:
        total = self.error_500_share + self.error_502_share + self.error_503_share + self.drop_share
        if total > 1 + 1e-9:
            raise ValueError(
                f"error_500_share + error_502_share + error_503_share + drop_share is {total:g}; "
                "they are drawn from one request and must add up to 1 or less"
            )
        return self

    def updated(self, changes: Mapping[str, Any]) -> FaultSettings:
        """Return a copy with ``changes`` applied and checked.

        Raises:
            ConfigError: A key is unknown or a value is out of range.
        """
        unknown = sorted(set(changes) - set(type(self).model_fields))
        if unknown:
            known = ", ".join(type(self).model_fields)
            raise ConfigError(f"unknown setting(s) {', '.join(unknown)}; known settings: {known}")
        try:
            return type(self).model_validate({**self.model_dump(), **changes})
        except ValidationError as err:
            raise ConfigError(_describe_validation(err)) from None


def _describe_validation(err: ValidationError) -> str:
    parts = []
    for item in err.errors():
        where = ".".join(str(p) for p in item["loc"]) or "settings"
        parts.append(f"{where}: {item['msg']}")
    return "; ".join(parts)


class ConfigFile(_Strict):
    """The YAML file given with ``--config``."""

    applications: tuple[Application, ...] = Field(min_length=1)
    faults: dict[str, Any] = Field(default_factory=dict)


class SandboxConfig(_Strict):
    """Everything the sandbox needs to start.

    Attributes:
        applications: Served applications; tokens and ids are unique.
        faults: Fault switches at start, and after ``reset`` with ``{"settings": true}``.
        db: SQLite file path, or ``:memory:``.
    """

    applications: tuple[Application, ...] = Field(min_length=1)
    faults: FaultSettings = FaultSettings()
    db: str = DEFAULT_DB

    @model_validator(mode="after")
    def _unique(self) -> SandboxConfig:
        ids = [app.id for app in self.applications]
        tokens = [app.token for app in self.applications]
        if len(set(ids)) != len(ids):
            raise ValueError(f"application ids must be unique, got {ids}")
        if len(set(tokens)) != len(tokens):
            raise ValueError("two applications share one token; give each its own")
        return self

    def by_token(self) -> dict[str, Application]:
        """Map each token to its application."""
        return {app.token: app for app in self.applications}


def demo_application(token: str = DEMO_TOKEN) -> Application:
    """The application served when no config file is given."""
    return Application(
        id=DEMO_APPLICATION_ID,
        name=DEMO_APPLICATION_NAME,
        token=token,
        languages=DEMO_LANGUAGES,
        types=dict(DEMO_TYPES),
        containers=(DEMO_CONTAINER,),
    )


def load_config_file(path: Path | str) -> tuple[tuple[Application, ...], FaultSettings]:
    """Read a YAML config file: its applications and its fault switches.

    Raises:
        ConfigError: The file is missing, is not YAML, or a key is wrong (named with its line).
    """
    _, parsed = load_model(path, ConfigFile)
    try:
        faults = FaultSettings().updated(parsed.faults)
    except ConfigError as err:
        raise ConfigError(f"{path}: faults: {err}") from None
    return parsed.applications, faults


def build_config(
    *,
    config_file: Path | str | None = None,
    token: str | None = None,
    db: str = DEFAULT_DB,
    fault_overrides: Mapping[str, Any] | None = None,
) -> SandboxConfig:
    """Build the start settings from a config file (or the demo) and command-line overrides.

    Args:
        config_file: YAML file with ``applications`` and optional ``faults``; None serves the demo.
        token: Token of the demo application; only valid without a config file.
        db: SQLite file path or ``:memory:``.
        fault_overrides: Fault settings from the command line; they win over the file's.

    Raises:
        ConfigError: The file or an override is wrong.
    """
    if config_file is not None:
        if token is not None:
            raise ConfigError(
                f"--token is for the demo application only; set each token in {config_file}"
            )
        applications, faults = load_config_file(config_file)
    else:
        applications, faults = (demo_application(token or DEMO_TOKEN),), FaultSettings()
    if fault_overrides:
        faults = faults.updated(fault_overrides)
    try:
        return SandboxConfig(applications=applications, faults=faults, db=db)
    except ValidationError as err:
        where = f"{config_file}: " if config_file is not None else ""
        raise ConfigError(where + _describe_validation(err)) from None
