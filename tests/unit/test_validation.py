"""Validation with a real GX suite: one reject per bad row naming the row and every rule."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from grip.config import ApplicationSpec, load_integration
from grip.errors import ConfigError, DataValidationError
from grip.mapping import Mapper, load_mapping
from grip.validation import KeySet, Validator, check_reject_share, reason_counts
from grip.validation.gx import new_context

ROOT = Path(__file__).resolve().parents[2]
DEMO = load_integration(ROOT / "include" / "integrations" / "demo.yaml")
APPLICATION = ApplicationSpec(
    languages=["en-gb", "ru-ru"], type_ids={"visitor": 380}, container_ids=[90001]
)
HEAD = """\
data_type: visitor
type_id: 380
default_container_id: 90001
key: reg_id
fields:
  first_name: {column: first, required: true}
  email: {column: mail, transforms: [email]}
  headline: head
  summary: bio
"""


@pytest.fixture(scope="module")
def gx() -> Any:
    """One GX context for the module: importing GX and building a context take seconds."""
    return new_context()


def _validator(
    tmp_path: Path,
    gx: Any,
    extra: str = "",
    application: ApplicationSpec | None = APPLICATION,
    loaded_with: ApplicationSpec | None = APPLICATION,
    keys: KeySet | None = None,
) -> tuple[Mapper, Validator]:
    path = tmp_path / "visitor.yaml"
    path.write_text(HEAD + textwrap.dedent(extra), encoding="utf-8")
    spec = load_mapping(path, loaded_with)
    return Mapper(spec), Validator(spec, application, context=gx, keys=keys)


def _row(**values: Any) -> dict[str, Any]:
    good = {"reg_id": "V1", "first": "Anna", "mail": "anna@example.com", "head": "CEO",
            "bio": "Hello"}  # fmt: skip
    return {**good, **values}


def _frame(rows: list[dict[str, Any]], start: int = 1) -> pd.DataFrame:
    frame = pd.DataFrame(rows)
    frame.index = pd.RangeIndex(start, start + len(frame))
    return frame


# (rule, bad row, extra mapping text, the reason the bad row must carry)
RULE_CASES = [
    (
        "required key",
        {"reg_id": "  "},
        "",
        r"^required: registration_id: no key: the key column\(s\) are empty$",
    ),
    (
        "required field",
        {"first": None},
        "",
        r"^required: first_name: no value \(the mapping marks it required\)$",
    ),
    (
        "required metadata",
        {"badge": ""},
        "metadata:\n  badge: {column: badge, required: true}\n",
        r"^required: metadata_raw\.badge: no value \(the mapping marks it required\)$",
    ),
    (
        "e-mail format",
        {"mail": "x@"},
        "",
        r"^email_format: email: 'x@' is not an e-mail address$",
    ),
    (
        "e-mail with a space inside",
        {"mail": "anna smith@example.com"},
        "",
        r"^email_format: email: 'anna smith@example\.com' is not an e-mail address$",
    ),
    (
        "admin in the key, any case",
        {"reg_id": "V-AdMiN-7"},
        "",
        r"^admin_key: registration_id: 'V-AdMiN-7' contains 'admin': Grip locks such a profile",
    ),
    (
        "headline too long",
        {"head": "x" * 141},
        "",
        r"^headline_length: headline: 141 characters; Grip allows at most 140$",
    ),
    (
        "summary too long",
        {"bio": "я" * 2001},
        "",
        r"^summary_length: summary: 2001 characters; Grip allows at most 2000$",
    ),
    (
        "the mapping's own expectation (re-evaluated in pandas)",
        {"phone": "12"},
        """\
          phone_number: phone
        expectations:
          - type: expect_column_values_to_match_regex
            rule: phone_format
            kwargs: {column: phone_number, regex: "^[0-9]{6,15}$"}
        """,
        r"^phone_format: phone_number: '12' fails expect_column_values_to_match_regex$",
    ),
    (
        "the mapping's own expectation (rows listed by GX)",
        {"phone": "12"},
        """\
          phone_number: phone
        expectations:
          - type: expect_column_value_lengths_to_equal
            kwargs: {column: phone_number, value: 6}
        """,
        r"^expect_column_value_lengths_to_equal: phone_number: '12' fails "
        r"expect_column_value_lengths_to_equal$",
    ),
    (
        "a code the translation table lacks",
        {"cats": "TO;XX"},
        "metadata:\n  cats: {column: cats, split: ';', translate: {TO: {en-gb: Tours}}}\n",
        r"^translation: metadata_raw\.cats: 'XX' is not a code of inline table",
    ),
    (
        "a date in another format",
        {"day": "2026/03/01"},
        "metadata:\n  day: {column: day, transforms: [{date: {from: '%d.%m.%Y'}}]}\n",
        r"^date_format: metadata_raw\.day: '2026/03/01' does not match %d\.%m\.%Y$",
    ),
]


@pytest.mark.parametrize(
    ("bad", "extra", "reason"), [c[1:] for c in RULE_CASES], ids=[c[0] for c in RULE_CASES]
)
def test_rule_rejects_the_row_and_names_rule_and_row(
    tmp_path: Path, gx: Any, bad: dict[str, Any], extra: str, reason: str
) -> None:
    mapper, validator = _validator(tmp_path, gx, extra)
    columns = mapper.spec.required_columns
    base = {"phone": "123456", "badge": "B", "cats": "TO", "day": "01.03.2026"}
    rows = [
        {**_row(reg_id=f"V{i}"), **{k: v for k, v in base.items() if k in columns}}
        for i in range(1, 6)
    ]
    rows[2] = {**rows[2], **bad}
    frame = _frame(rows, start=40)
    checked = validator.validate(mapper.map(frame))

    (reject,) = checked.rejects
    assert reject.source_row == 42
    assert reject.data_type == "visitor"
    assert len(reject.reasons) == 1, reject.reasons
    assert re.search(reason, reject.reasons[0]), reject.reasons[0]
    expected_key = None if bad.get("reg_id", "x").strip() == "" else rows[2]["reg_id"]
    assert reject.registration_id == expected_key
    assert list(checked.valid.rows.index) == [40, 41, 43, 44]
    assert checked.checked == 5
    assert all(len(json.loads(text)) > 3 for text in checked.valid.rows["payload_json"])


def test_every_reason_of_a_row_is_listed(tmp_path: Path, gx: Any) -> None:
    mapper, validator = _validator(tmp_path, gx)
    frame = _frame([_row(reg_id="ADMIN1", first="", mail="nope", head="h" * 200), _row()])
    (reject,) = validator.validate(mapper.map(frame)).rejects
    assert reject.source_row == 1
    assert reject.rules == ["required", "email_format", "admin_key", "headline_length"]


def test_repeated_keys_keep_the_first_row(tmp_path: Path, gx: Any) -> None:
    mapper, validator = _validator(tmp_path, gx)
    frame = _frame([_row(reg_id="K1"), _row(reg_id="K2"), _row(reg_id="K1"), _row(reg_id="K1")])
    checked = validator.validate(mapper.map(frame))
    assert [r.source_row for r in checked.rejects] == [3, 4]
    assert checked.rejects[0].reasons == [
        "unique_key: registration_id: 'K1' is already the key of source row 1"
    ]
    assert list(checked.valid.rows.index) == [1, 2]


def test_keys_stay_unique_across_chunks_and_data_types(tmp_path: Path, gx: Any) -> None:
    keys = KeySet()
    mapper, validator = _validator(tmp_path, gx, keys=keys)
    first = validator.validate(mapper.map(_frame([_row(reg_id="A"), _row(reg_id="B")])))
    second = validator.validate(mapper.map(_frame([_row(reg_id="C"), _row(reg_id="A")], start=3)))
    assert first.rejects == []
    (repeat,) = second.rejects
    assert repeat.source_row == 4
    assert repeat.reasons == [
        "unique_key: registration_id: 'A' is already the key of source row 1 in this run"
    ]

    other = tmp_path / "other"
    other.mkdir()
    path = other / "visitor.yaml"
    path.write_text(HEAD.replace("data_type: visitor", "data_type: speaker"), encoding="utf-8")
    spec = load_mapping(path)
    speakers = Validator(spec, None, context=gx, keys=keys)
    (clash,) = speakers.validate(Mapper(spec).map(_frame([_row(reg_id="C")], start=9))).rejects
    assert clash.reasons == [
        "unique_key: registration_id: 'C' is already the key of source row 3 of the visitor "
        "data in this run"
    ]
    assert "A" in keys
    assert len(keys) == 3


def test_metadata_in_a_language_the_application_lacks(tmp_path: Path, gx: Any) -> None:
    only_english = ApplicationSpec(languages=["en-gb"], type_ids={"visitor": 380})
    mapper, validator = _validator(
        tmp_path,
        gx,
        "metadata:\n  org: {languages: {en-gb: co, ru-ru: co_ru}}\n",
        application=only_english,
        loaded_with=None,
    )
    frame = _frame([_row(co="Acme", co_ru=None), _row(reg_id="V2", co="Acme", co_ru="Акме")])
    (reject,) = validator.validate(mapper.map(frame)).rejects
    assert reject.source_row == 2
    assert reject.reasons == [
        "metadata_languages: metadata_raw: metadata_raw uses en-gb,ru-ru; the application "
        "enables en-gb"
    ]


def test_a_type_id_the_application_lacks_fails_the_batch(tmp_path: Path, gx: Any) -> None:
    mapper, validator = _validator(
        tmp_path,
        gx,
        application=ApplicationSpec(languages=["en-gb"], type_ids={"exhibitor": 381}),
        loaded_with=None,
    )
    with pytest.raises(
        DataValidationError,
        match=r"^visitor: 2 of 2 rows fail type_id: type_id 380 is not configured for the "
        r"application \(exhibitor=381\); fix type_id in visitor\.yaml$",
    ):
        validator.validate(mapper.map(_frame([_row(), _row(reg_id="V2")])))


def test_an_expectation_gx_does_not_know_names_the_mapping_line(tmp_path: Path, gx: Any) -> None:
    mapper, validator = _validator(
        tmp_path,
        gx,
        "expectations:\n  - {type: expect_column_values_to_sparkle, kwargs: {column: email}}\n",
    )
    with pytest.raises(
        ConfigError,
        match=r"visitor\.yaml:11: expectations\[0\]: the expectation cannot be built: "
        r"great_expectations has no expectation 'expect_column_values_to_sparkle'",
    ):
        validator.validate(mapper.map(_frame([_row()])))


def test_validation_keeps_results_and_writes_data_docs(tmp_path: Path, gx: Any) -> None:
    mapper, validator = _validator(tmp_path, gx)
    assert validator.write_data_docs(tmp_path / "none") is None
    for start in (1, 3):
        validator.validate(mapper.map(_frame([_row(reg_id=f"V{start}"), _row(mail="x")], start)))
    assert len(validator.results) == 2
    rules = {item["rule"]: item for item in validator.results[0]["rules"]}
    assert rules["email_format"] == {
        "rule": "email_format",
        "column": "email",
        "expectation": "expect_column_values_to_match_regex",
        "success": False,
        "unexpected_count": 1,
    }
    assert validator.results[0]["rejected"] == 1
    index = validator.write_data_docs(tmp_path / "report" / "data_docs")
    assert index is not None
    assert index.is_file()
    pages = list((index.parent / "validations").rglob("*.html"))
    assert len(pages) == 2
    page = pages[0].read_text(encoding="utf-8")
    assert "must match this regular expression" in page
    assert "visitor" in page


def test_an_empty_chunk_needs_no_gx_run(tmp_path: Path, gx: Any) -> None:
    mapper, validator = _validator(tmp_path, gx)
    checked = validator.validate(mapper.map(pd.DataFrame(columns=list(_row()))))
    assert checked.rejects == []
    assert len(checked.valid) == 0
    assert validator.results == []


SHARE_CASES = [
    ("nothing read", 0, 0, 0.05, None),
    ("under the share", 1000, 49, 0.05, None),
    ("at the share", 1000, 50, 0.05, None),
    (
        "over the share",
        1000,
        51,
        0.05,
        r"^visitor: 51 of 1,000 rows rejected \(5\.1%\), more than the 5\.0% the integration "
        r"allows; most common reasons: email_format \(40\), required \(9\), admin_key \(2\); see "
        r"the rejects report",
    ),
    (
        "none allowed",
        10,
        1,
        0.0,
        r"^visitor: 1 of 10 rows rejected \(10\.0%\), more than the 0\.0%",
    ),
]


@pytest.mark.parametrize(
    ("read", "rejected", "share", "expected"),
    [c[1:] for c in SHARE_CASES],
    ids=[c[0] for c in SHARE_CASES],
)
def test_reject_share(read: int, rejected: int, share: float, expected: str | None) -> None:
    reasons = {"required": 9, "email_format": 40, "admin_key": 2, "unique_key": 1}
    if expected is None:
        check_reject_share(read, rejected, share, "visitor", reasons=reasons)
    else:
        with pytest.raises(DataValidationError, match=expected):
            check_reject_share(read, rejected, share, "visitor", reasons=reasons)


def test_importing_mapping_and_validation_does_not_import_gx() -> None:
    code = (
        "import sys, grip.mapping, grip.validation, grip.mapping.engine\n"
        "print('great_expectations' in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert result.stdout.strip() == "False"


# Any registration row: text of every kind (Cyrillic, control characters, quotes, very long),
# numbers, booleans and gaps, in the demo visitor columns.
_TEXT = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=40
) | st.sampled_from(["", " ", "admin", "x@", "a@b.co", "TO;LEI", "vip", "21.03.2026"])
_VALUE = st.none() | _TEXT | st.integers(-5, 10**6) | st.booleans() | st.just("é" * 150)
_VISITOR_COLUMNS = [
    "reg_id", "first_name", "last_name", "email", "phone", "job_title", "company", "company_ru",
    "bio", "city", "country", "categories", "visitor_type", "registered_on", "status", "is_test",
    "updated_at",
]  # fmt: skip
_ROWS = st.lists(
    st.fixed_dictionaries(
        {
            **{column: _VALUE for column in _VISITOR_COLUMNS},
            "reg_id": st.none() | st.sampled_from(["V1", "V2", " v3 ", "Admin4", ""]) | _TEXT,
            "email": st.none() | st.emails() | _TEXT,
            "categories": st.none()
            | st.lists(st.sampled_from(["TO", "lux", "ZZ", ""])).map(";".join),
        }
    ),
    min_size=1,
    max_size=12,
)


def _obeys_grip_rules(payload: dict[str, Any], languages: set[str]) -> list[str]:
    """Grip's rules, checked independently of the engine; returns what is broken."""
    broken = []
    key = payload.get("registration_id")
    if not isinstance(key, str) or not key.strip() or "admin" in key.lower():
        broken.append("registration_id")
    if payload.get("type_id") not in (380, 381, 382):
        broken.append("type_id")
    if payload.get("default_container_id") != 90001:
        broken.append("default_container_id")
    for field in ("first_name", "last_name", "email"):
        if not isinstance(payload.get(field), str) or not payload[field]:
            broken.append(field)
    if not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]{2,}", payload.get("email", "")):
        broken.append("email format")
    if len(payload.get("headline", "")) > 140 or len(payload.get("summary", "")) > 2000:
        broken.append("length")
    for field, value in payload.items():
        if isinstance(value, str) and not value:
            broken.append(f"empty {field}")
    for key_name, values in payload.get("metadata_raw", {}).items():
        if not isinstance(values, list) or not values:
            broken.append(f"metadata {key_name}")
            continue
        for value in values:
            if not value or not set(value) <= languages or not all(value.values()):
                broken.append(f"metadata {key_name} value")
    return broken


@pytest.fixture(scope="module")
def demo_visitor(gx: Any) -> tuple[Mapper, Validator]:
    spec = load_mapping(DEMO.mapping_path("visitor"), DEMO.spec.application)
    return Mapper(spec), Validator(spec, DEMO.spec.application, context=gx)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=_ROWS)
def test_any_row_becomes_a_valid_payload_or_a_reject(
    demo_visitor: tuple[Mapper, Validator], rows: list[dict[str, Any]]
) -> None:
    mapper, validator = demo_visitor
    validator.keys = KeySet()  # each example is a run of its own
    frame = _frame(rows)
    mapped = mapper.map(frame)
    checked = validator.validate(mapped)

    assert len(checked.valid) + len(checked.rejects) + sum(mapped.filtered.values()) == len(rows)
    assert not set(checked.valid.rows.index) & {r.source_row for r in checked.rejects}
    for reject in checked.rejects:
        assert reject.source_row in frame.index
        assert reject.reasons
        assert all(re.match(r"^[a-z_]+: [a-z_.]+: .+", reason, re.S) for reason in reject.reasons)
    keys = list(checked.valid.rows["registration_id"])
    assert len(keys) == len(set(keys))
    for payload in checked.valid.payloads():
        assert _obeys_grip_rules(payload, {"en-gb", "ru-ru"}) == []
    assert sum(reason_counts(checked.rejects).values()) >= len(checked.rejects)
