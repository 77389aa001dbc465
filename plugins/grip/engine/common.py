"""Helpers the engine's steps share: opening the ledger, loading mappings, JSON forms."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from grip.config import Integration
from grip.engine.gate import mappings_fingerprint
from grip.errors import GripError
from grip.ledger import Ledger, default_ledger_url
from grip.ledger.repository import encode_watermark

if TYPE_CHECKING:
    from grip.mapping import MappingSpec


def open_ledger(integration: Integration | None = None, url: str | None = None) -> Ledger:
    """Open (and migrate) the ledger for runs outside Airflow.

    The URL is, first found: ``url``, ``GRIP_LEDGER_URL``, the integration file's
    ``ledger_url``, a SQLite file ``var/ledger.sqlite`` in the current folder.
    """
    if url is None and not os.environ.get("GRIP_LEDGER_URL"):
        url = integration.spec.ledger_url if integration is not None else None
    return Ledger(url or default_ledger_url())


def load_mappings(integration: Integration) -> dict[str, MappingSpec]:
    """Load every data type's mapping of an integration (ConfigError lists what is wrong)."""
    from grip.mapping import load_mapping

    return {
        data_type: load_mapping(integration.mapping_path(data_type), integration.spec.application)
        for data_type in integration.spec.data_types
    }


def integration_fingerprint(integration: Integration) -> str:
    """The fingerprint of the integration's mappings as they are on disk now."""
    specs = load_mappings(integration)
    return mappings_fingerprint({dt: spec.fingerprint for dt, spec in specs.items()})


def reason_key(reason: str) -> str:
    """A reason without the quoted values in it, to count reasons (and keep data out of them)."""
    return re.sub(r"'[^']*'|\"[^\"]*\"", "'…'", reason).strip()


def rounded(timings: Mapping[str, float]) -> dict[str, float]:
    return {step: round(seconds, 3) for step, seconds in timings.items()}


def jsonable(value: Any) -> Any:
    """``value`` as plain JSON types; other values as the ledger's watermark text, else str."""
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    try:
        return encode_watermark(value)
    except GripError:
        return str(value)
