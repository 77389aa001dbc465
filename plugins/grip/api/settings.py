"""Settings of the Grip client, validated when they are built."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from grip.errors import ConfigError

DEFAULT_BASE_URL = "https://api-prod.grip.events/1"


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class ClientSettings:
    """How the client reaches Grip and how hard it may push.

    Attributes:
        base_url: API root including its version, such as ``https://api-prod.grip.events/1``.
        token: API token from the Grip dashboard; never logged, never shown in a repr.
        concurrency: requests in flight at once (worker threads and pooled connections).
        rate_limit: requests per second for the whole client; ``None`` for no fixed limit.
        rate_burst: requests that may start back to back before the rate applies.
        adaptive: slow down on 429 and climb back while answers are clean, so that a push
            settles just under an unknown server limit.
        connect_timeout: seconds to open a connection.
        read_timeout: seconds to wait for an answer.
        max_attempts: attempts per record, the first one included.
        max_elapsed: seconds from a record's first attempt after which it is not retried.
        backoff_base: first backoff in seconds when the server gives no ``Retry-After``.
        backoff_max: longest single backoff in seconds.
        verify: check TLS certificates (``True``), or a CA bundle path.
        allow_http: accept a plain-http base URL that is not on the loopback interface.
        max_in_flight: payloads taken from the input but not yet answered; bounds memory.
        progress_interval: seconds between progress lines during a push.
    """

    base_url: str = DEFAULT_BASE_URL
    token: str = field(default="", repr=False)
    concurrency: int = 8
    rate_limit: float | None = None
    rate_burst: int = 1
    adaptive: bool = True
    connect_timeout: float = 5.0
    read_timeout: float = 30.0
    max_attempts: int = 6
    max_elapsed: float = 300.0
    backoff_base: float = 0.5
    backoff_max: float = 60.0
    verify: bool | str = True
    allow_http: bool = False
    max_in_flight: int | None = None
    progress_interval: float = 10.0

    def __post_init__(self) -> None:
        parts = urlsplit(self.base_url)
        if parts.scheme not in {"http", "https"} or not parts.hostname:
            raise ConfigError(
                f"Grip base URL {self.base_url!r} must look like https://host/1 (scheme and host)"
            )
        if parts.scheme == "http" and not (_is_loopback(parts.hostname) or self.allow_http):
            raise ConfigError(
                f"Grip base URL {self.base_url!r} uses plain http to a host that is not loopback: "
                "use https, or set allow_http to accept sending the token unencrypted"
            )
        if not self.token:
            raise ConfigError("the Grip API token is empty: copy it from the dashboard's API page")
        checks = {
            "concurrency": self.concurrency >= 1,
            "rate_burst": self.rate_burst >= 1,
            "max_attempts": self.max_attempts >= 1,
            "connect_timeout": self.connect_timeout > 0,
            "read_timeout": self.read_timeout > 0,
            "max_elapsed": self.max_elapsed > 0,
            "backoff_base": self.backoff_base >= 0,
            "backoff_max": self.backoff_max >= self.backoff_base,
            "rate_limit": self.rate_limit is None or self.rate_limit > 0,
            "max_in_flight": self.max_in_flight is None or self.max_in_flight >= self.concurrency,
        }
        wrong = [name for name, ok in checks.items() if not ok]
        if wrong:
            raise ConfigError(
                f"Grip client settings out of range: {', '.join(wrong)} (concurrency, attempts "
                "and burst at least 1, timeouts positive, max_in_flight at least concurrency)"
            )

    @property
    def in_flight_bound(self) -> int:
        return self.max_in_flight or self.concurrency * 2

    @property
    def root(self) -> str:
        return self.base_url.rstrip("/")
