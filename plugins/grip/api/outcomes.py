"""What the client reports for each record and for a whole push."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class Outcome(StrEnum):
    """The final result of pushing one record."""

    CREATED = "created"
    UPDATED = "updated"
    REJECTED = "rejected"
    FAILED = "failed"


@dataclass(slots=True)
class PushOutcome:
    """The known end of one payload's push.

    Attributes:
        registration_id: the record's key, as sent.
        outcome: created, updated, rejected (Grip refused it) or failed (no answer after the
            retry budget).
        status: HTTP status of the last answer; ``None`` when no answer came.
        grip_id: Grip's id of the stored profile, when it was stored.
        attempts: requests made for this record.
        latency: seconds from the first attempt to the final answer, retries included.
        reason: why a record was rejected or failed, short, from the server where it said so.
        payload: the payload as sent.
    """

    registration_id: str
    outcome: Outcome
    status: int | None
    grip_id: int | None
    attempts: int
    latency: float
    reason: str | None = None
    payload: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def accepted(self) -> bool:
        return self.outcome in (Outcome.CREATED, Outcome.UPDATED)


@dataclass
class PushStats:
    """Counters of one client over its lifetime; safe to read while a push runs."""

    requests: int = 0
    retries: int = 0
    throttled: int = 0
    in_flight: int = 0
    peak_in_flight: int = 0
    outcomes: dict[str, int] = field(default_factory=lambda: {o.value: 0 for o in Outcome})
    elapsed: float = 0.0

    @property
    def done(self) -> int:
        return sum(self.outcomes.values())

    def as_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "retries": self.retries,
            "throttled": self.throttled,
            "peak_in_flight": self.peak_in_flight,
            "outcomes": dict(self.outcomes),
            "elapsed": round(self.elapsed, 3),
        }


@dataclass(frozen=True, slots=True)
class Difference:
    """One field that Grip holds differently from what was sent."""

    registration_id: str
    field: str
    sent: Any
    stored: Any


@dataclass
class ReadBackReport:
    """The comparison of sent payloads with what Grip holds for them."""

    checked: int
    differences: list[Difference]
    missing: list[str]

    @property
    def clean(self) -> bool:
        return not self.differences and not self.missing
