"""The Grip API client: push, retry, rate limit and read back."""

from __future__ import annotations

from grip.api.client import CONTROL_KEYS, GripClient, compare_profile, normalise_metadata
from grip.api.outcomes import Difference, Outcome, PushOutcome, PushStats, ReadBackReport
from grip.api.settings import DEFAULT_BASE_URL, ClientSettings

__all__ = [
    "CONTROL_KEYS",
    "DEFAULT_BASE_URL",
    "ClientSettings",
    "Difference",
    "GripClient",
    "Outcome",
    "PushOutcome",
    "PushStats",
    "ReadBackReport",
    "compare_profile",
    "normalise_metadata",
]
