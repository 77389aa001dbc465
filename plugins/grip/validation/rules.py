"""The validation rules a mapping implies: Grip's own limits plus what the mapping adds."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from grip.config import ApplicationSpec
from grip.mapping.engine import LANGUAGES_COLUMN, METADATA_PREFIX
from grip.mapping.loader import MappingSpec

EMAIL_PATTERN = r"^[^@\s<>(),;:\"\[\]]+@[^@\s<>(),;:\"\[\]]+\.[^@\s<>(),;:\"\[\]]{2,}$"
"""An e-mail address as Grip can use it: one '@', no spaces, a dot in the domain."""

ADMIN_PATTERN = r"(?i)admin"
HEADLINE_MAX = 140
SUMMARY_MAX = 2000


@dataclass(frozen=True)
class Rule:
    """One check of a validated column, run as a Great Expectations expectation.

    Attributes:
        name: The rule's name in reject reasons (``email_format``).
        column: The column of :attr:`MappedChunk.rows` it checks.
        expectation: The GX expectation type (snake_case).
        kwargs: The expectation's arguments other than ``column``.
        describe: Says, for a failing value, what is wrong and what would be right.
        batch: When it fails, the whole batch fails (a configuration mistake, not a bad row).
        keep_first: Rows failing it are rejected only after their first occurrence
            (uniqueness: the first row of a key goes on, the later ones are rejected).
        source_index: For an expectation the mapping adds, its index under ``expectations:``.
    """

    name: str
    column: str
    expectation: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    describe: Callable[[Any], str] = repr
    batch: bool = False
    keep_first: bool = False
    source_index: int | None = None


def rules_for(spec: MappingSpec, application: ApplicationSpec | None) -> list[Rule]:
    """Build the rules of a mapping, in the order their reasons are listed."""
    fields = spec.model.fields
    rules = [
        Rule(
            "required",
            "registration_id",
            "expect_column_values_to_not_be_null",
            describe=lambda _: "no key: the key column(s) are empty",
        )
    ]
    for name, item in fields.items():
        if item.required:
            rules.append(
                Rule(
                    "required",
                    name,
                    "expect_column_values_to_not_be_null",
                    describe=lambda _: "no value (the mapping marks it required)",
                )
            )
    for key, meta in spec.model.metadata.items():
        if meta.required:
            rules.append(
                Rule(
                    "required",
                    METADATA_PREFIX + key,
                    "expect_column_values_to_not_be_null",
                    describe=lambda _: "no value (the mapping marks it required)",
                )
            )
    if "email" in fields:
        rules.append(
            Rule(
                "email_format",
                "email",
                "expect_column_values_to_match_regex",
                {"regex": EMAIL_PATTERN},
                describe=lambda value: f"{value!r} is not an e-mail address",
            )
        )
    rules.append(
        Rule(
            "unique_key",
            "registration_id",
            "expect_column_values_to_be_unique",
            describe=lambda value: f"{value!r} is the key of an earlier row of the batch",
            keep_first=True,
        )
    )
    rules.append(
        Rule(
            "admin_key",
            "registration_id",
            "expect_column_values_to_not_match_regex",
            {"regex": ADMIN_PATTERN},
            describe=lambda value: (
                f"{value!r} contains 'admin': Grip locks such a profile against every later "
                "update; change the key"
            ),
        )
    )
    for name, limit in (("headline", HEADLINE_MAX), ("summary", SUMMARY_MAX)):
        if name in fields:
            rules.append(
                Rule(
                    f"{name}_length",
                    name,
                    "expect_column_value_lengths_to_be_between",
                    {"max_value": limit},
                    describe=lambda value, limit=limit: (
                        f"{len(value)} characters; Grip allows at most {limit}"
                    ),
                )
            )
    if application is not None and spec.model.metadata:
        enabled = sorted(lang.lower() for lang in application.languages)
        pattern = "^(?:(?:" + "|".join(re.escape(lang) for lang in enabled) + ")(?:,|$))*$"
        rules.append(
            Rule(
                "metadata_languages",
                LANGUAGES_COLUMN,
                "expect_column_values_to_match_regex",
                {"regex": pattern},
                describe=lambda value: (
                    f"metadata_raw uses {value}; the application enables {', '.join(enabled)}"
                ),
            )
        )
    if application is not None and application.type_ids:
        configured = sorted(set(application.type_ids.values()))
        rules.append(
            Rule(
                "type_id",
                "type_id",
                "expect_column_values_to_be_in_set",
                {"value_set": configured},
                describe=lambda value: (
                    f"type_id {value} is not configured for the application ("
                    + ", ".join(f"{n}={t}" for n, t in application.type_ids.items())
                    + f"); fix type_id in {spec.path.name}"
                ),
                batch=True,
            )
        )
    for index, extra in enumerate(spec.model.expectations):
        kwargs = dict(extra.kwargs)
        column = str(kwargs.pop("column", "registration_id"))
        rules.append(
            Rule(
                extra.rule or extra.type,
                column,
                extra.type,
                kwargs,
                describe=lambda value, t=extra.type: f"{value!r} fails {t}",
                source_index=index,
            )
        )
    return rules
