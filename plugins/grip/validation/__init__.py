"""Validation: a Great Expectations suite built from each mapping, and row-level rejects.

Importing this package does not import great_expectations; the first validation does.
"""

from __future__ import annotations

from grip.validation.validator import (
    KeySet,
    Reject,
    ValidatedChunk,
    Validator,
    check_reject_share,
    reason_counts,
)

__all__ = [
    "KeySet",
    "Reject",
    "ValidatedChunk",
    "Validator",
    "check_reject_share",
    "reason_counts",
]
