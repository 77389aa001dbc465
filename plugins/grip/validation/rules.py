"""The validation rules a mapping implies: Grip's own limits plus what the mapping adds."""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from grip.config import ApplicationSpec
from grip.mapping.engine import LANGUAGES_COLUMN, METADATA_PREFIX
from grip.mapping.loader import MappingSpec

# NOTE: written for RE2 as well as Python's re (no \s, \Z for the end): pandas then checks
# pyarrow-backed text in C++ instead of falling back to a Python loop
_EMAIL_CHAR = (
    r"[^@\x00-\x20\x7f<>(),;:\"\[\]"
    "\u00a0\u1680\u2000-\u200b\u2028\u2029\u202f\u205f\u3000\ufeff]"
)
EMAIL_PATTERN = rf"^{_EMAIL_CHAR}+@{_EMAIL_CHAR}+\.{_EMAIL_CHAR}{{2,}}\Z"
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
                    describe=functools.partial(_too_long, limit=limit),
                )
            )
    if application is not None and spec.model.metadata:
        enabled = sorted(lang.lower() for lang in application.languages)
        pattern = "^(?:(?:" + "|".join(re.escape(lang) for lang in enabled) + r")(?:,|\Z))*\Z"
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
                describe=functools.partial(_fails, expectation=extra.type),
                source_index=index,
            )
        )
    return rules


def _too_long(value: Any, limit: int) -> str:
    return f"{len(value)} characters; Grip allows at most {limit}"


def _fails(value: Any, expectation: str) -> str:
    return f"{value!r} fails {expectation}"


def _not_null(values: pd.Series, kwargs: dict[str, Any]) -> pd.Series:
    return values.isna()


def _match_regex(values: pd.Series, kwargs: dict[str, Any]) -> pd.Series:
    return values.notna() & ~values.str.contains(kwargs["regex"], na=True)


def _not_match_regex(values: pd.Series, kwargs: dict[str, Any]) -> pd.Series:
    return values.notna() & values.str.contains(kwargs["regex"], na=False)


def _unique(values: pd.Series, kwargs: dict[str, Any]) -> pd.Series:
    return values.notna() & values.duplicated(keep=False)


def _lengths_between(values: pd.Series, kwargs: dict[str, Any]) -> pd.Series:
    lengths = values.str.len()
    low, high = kwargs.get("min_value"), kwargs.get("max_value")
    failing = pd.Series(False, index=values.index)
    if low is not None:
        failing |= lengths < low
    if high is not None:
        failing |= lengths > high
    return values.notna() & failing.fillna(False)


def _in_set(values: pd.Series, kwargs: dict[str, Any]) -> pd.Series:
    return values.notna() & ~values.isin(list(kwargs["value_set"]))


_REEVALUATE: dict[str, tuple[Callable[[pd.Series, dict[str, Any]], pd.Series], set[str]]] = {
    "expect_column_values_to_not_be_null": (_not_null, set()),
    "expect_column_values_to_match_regex": (_match_regex, {"regex"}),
    "expect_column_values_to_not_match_regex": (_not_match_regex, {"regex"}),
    "expect_column_values_to_be_unique": (_unique, set()),
    "expect_column_value_lengths_to_be_between": (_lengths_between, {"min_value", "max_value"}),
    "expect_column_values_to_be_in_set": (_in_set, {"value_set"}),
}


def failing_rows(rule: Rule, values: pd.Series) -> pd.Series | None:
    """Re-evaluate in pandas which rows fail ``rule``, as GX counts them (nulls are skipped
    except by the not-null check); None when the expectation is not one this module knows.
    """
    known = _REEVALUATE.get(rule.expectation)
    if known is None or not set(rule.kwargs) <= known[1]:
        return None
    return known[0](values, rule.kwargs)
