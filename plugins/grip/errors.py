"""Every error grip-sync raises, grouped by the phase of a run that raises it."""

from __future__ import annotations


class GripError(Exception):
    """Root of every error raised by grip-sync."""


class ConfigError(GripError):
    """An integration file, mapping file or setting is wrong; nothing has been read or sent."""


class SourceError(GripError):
    """A partner database, SFTP drop or local file could not be read."""


class MappingError(GripError):
    """A mapping file is invalid or cannot be applied to the source's columns."""


class DataValidationError(GripError):
    """A batch of payloads failed validation as a whole (too many rejects, or a batch rule)."""


class ApiError(GripError):
    """The Grip API answered in a way the client could not turn into an outcome."""


class ApiRetriableError(ApiError):
    """A transient failure (429, 5xx, timeout, dropped connection): worth another attempt."""

    def __init__(self, reason: str, *, status: int | None = None, retry_after: float | None = None):
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.retry_after = retry_after


class ApiRejectedError(ApiError):
    """Grip refused a record for good (a 4xx other than 429, or ``success: false``)."""

    def __init__(self, reason: str, *, status: int | None = None):
        super().__init__(reason)
        self.reason = reason
        self.status = status


class ApiAuthError(ApiError):
    """Grip refused the token (401 or 403): no further request can succeed."""

    def __init__(self, reason: str, *, status: int | None = None):
        super().__init__(reason)
        self.reason = reason
        self.status = status


class LedgerError(GripError):
    """The ledger database could not be read or written, or refuses the requested stage."""


class StageRefusedError(LedgerError):
    """A stage may not run yet: the sample was not approved or the mapping has drifted."""
