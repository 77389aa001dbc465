"""GripHook: a Grip client built from an Airflow connection."""

from __future__ import annotations

from typing import Any

from airflow.sdk import BaseHook

from grip.api import DEFAULT_BASE_URL, ClientSettings, GripClient
from grip.errors import ConfigError

_BOOLEAN_EXTRAS = ("adaptive", "allow_http")
_NUMBER_EXTRAS = {
    "concurrency": int,
    "rate_burst": int,
    "max_attempts": int,
    "max_in_flight": int,
    "rate_limit": float,
    "connect_timeout": float,
    "read_timeout": float,
    "max_elapsed": float,
    "backoff_base": float,
    "backoff_max": float,
    "progress_interval": float,
}


class GripHook(BaseHook):
    """Builds a :class:`~grip.api.GripClient` from an Airflow connection.

    The connection's host is the API base URL (``https://api-prod.grip.events/1``, or a host
    name, with the path taken from ``schema``), its password the API token from the Grip
    dashboard. Extras set the client: ``concurrency``, ``rate_limit``, ``rate_burst``,
    ``adaptive``, ``connect_timeout``, ``read_timeout``, ``max_attempts``, ``max_elapsed``,
    ``backoff_base``, ``backoff_max``, ``verify`` (bool or CA bundle path), ``allow_http``,
    ``max_in_flight``, ``progress_interval``.

    Args:
        grip_conn_id: the connection id; ``grip_default`` when not given.
        overrides: client settings that win over the connection's extras (for example a
            rate limit from the integration file).
    """

    conn_name_attr = "grip_conn_id"
    default_conn_name = "grip_default"
    conn_type = "grip"
    hook_name = "Grip"

    def __init__(self, grip_conn_id: str = default_conn_name, **overrides: Any):
        super().__init__()
        self.grip_conn_id = grip_conn_id
        self.overrides = overrides

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        return {
            "hidden_fields": ["login", "port"],
            "relabeling": {"host": "Base URL", "password": "API token", "schema": "Base path"},
            "placeholders": {
                "host": DEFAULT_BASE_URL,
                "extra": '{"concurrency": 8, "rate_limit": null, "adaptive": true}',
            },
        }

    def settings(self) -> ClientSettings:
        """Read the connection and return validated client settings."""
        conn = self.get_connection(self.grip_conn_id)
        extra = conn.extra_dejson or {}
        values: dict[str, Any] = {
            "base_url": base_url_of(conn.host, conn.schema, conn.port),
            "token": conn.password or "",
        }
        for key, cast in _NUMBER_EXTRAS.items():
            if extra.get(key) is not None:
                values[key] = self._cast(key, extra[key], cast)
        for key in _BOOLEAN_EXTRAS:
            if key in extra:
                values[key] = _as_bool(extra[key])
        if "verify" in extra:
            verify = extra["verify"]
            values["verify"] = (
                verify if isinstance(verify, str) and "/" in verify else (_as_bool(verify))
            )
        values.update({k: v for k, v in self.overrides.items() if v is not None})
        try:
            return ClientSettings(**values)
        except ConfigError as err:
            raise ConfigError(f"connection {self.grip_conn_id!r}: {err}") from None

    def get_conn(self) -> GripClient:
        """Return a new client; close it (or use it as a context manager) when done."""
        return GripClient(self.settings())

    def _cast(self, key: str, value: Any, cast: type) -> Any:
        try:
            return cast(value)
        except (TypeError, ValueError):
            raise ConfigError(
                f"connection {self.grip_conn_id!r}: extra {key!r} must be a number, got {value!r}"
            ) from None


def base_url_of(host: str | None, schema: str | None, port: int | None) -> str:
    """Turn a connection's host, schema and port into the API base URL."""
    if not host:
        return DEFAULT_BASE_URL
    if "://" in host:
        return host.rstrip("/")
    path = (schema or "1").strip("/")
    netloc = f"{host}:{port}" if port else host
    return f"https://{netloc}/{path}"


def _as_bool(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in {"1", "true", "yes", "on"}
    return bool(value)
