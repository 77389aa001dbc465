"""The transform engine: transforms, templates, metadata shapes, filters, keys and JSON text."""

from __future__ import annotations

import json
import textwrap
from datetime import date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from grip.config import ApplicationSpec
from grip.errors import MappingError
from grip.mapping import MappedChunk, Mapper, load_mapping
from grip.payload import canonical_json

APPLICATION = ApplicationSpec(languages=["en-gb", "ru-ru"], type_ids={"visitor": 380})
HEAD = """\
data_type: visitor
type_id: 380
default_container_id: 90001
key: reg_id
"""
TABLE = "code,en-gb,ru-ru\nTO,Tour Operator,Туроператор\nLEI,Leisure,Многопрофильный\nRU,,Только\n"


def _mapper(tmp_path: Path, body: str, table: str = TABLE) -> Mapper:
    (tmp_path / "table.csv").write_text(table, encoding="utf-8")
    path = tmp_path / "mapping.yaml"
    path.write_text(HEAD + textwrap.dedent(body), encoding="utf-8")
    return Mapper(load_mapping(path, APPLICATION))


def _frame(rows: list[dict[str, Any]], start: int = 1) -> pd.DataFrame:
    frame = pd.DataFrame(rows)
    frame.index = pd.RangeIndex(start, start + len(frame))
    return frame


def _payloads(chunk: MappedChunk) -> list[dict[str, Any]]:
    payloads = list(chunk.payloads())
    for text, payload in zip(chunk.rows["payload_json"], payloads, strict=True):
        assert text == canonical_json(payload)  # the column is exactly the canonical text
    return payloads


def _field(tmp_path: Path, spec: str, values: list[Any], field: str = "summary") -> list[Any]:
    mapper = _mapper(tmp_path, f"fields:\n  {field}: {spec}\n")
    frame = _frame([{"reg_id": f"R{i}", "v": value} for i, value in enumerate(values)])
    return [payload.get(field) for payload in _payloads(mapper.map(frame))]


TRANSFORM_CASES = [
    ("trim", "[trim]", ["  a  b ", "\tx\n", "   ", None], ["a  b", "x", None, None]),
    ("collapse spaces", "[collapse_spaces]", ["a   b\t\tc", " a "], ["a b c", " a "]),
    ("lower", "[lower]", ["ÀB Иван"], ["àb иван"]),
    ("upper", "[upper]", ["café ёж"], ["CAFÉ ЁЖ"]),
    ("title", "[title]", ["o'neil jean-PAUL иван"], ["O'Neil Jean-Paul Иван"]),
    (
        "e-mail",
        "[email]",
        [" Jou@Example.COM ", "mailto:A@B.org", "<x@y.io>", "no-at-sign"],
        ["jou@example.com", "a@b.org", "x@y.io", "no-at-sign"],
    ),
    (
        "phone",
        "[phone]",
        ["+44 20 7946-0958", "0044 (20) 79460958", "8 (495) 123-45-67", "n/a"],
        ["+442079460958", "+442079460958", "84951234567", None],
    ),
    (
        "phone with a country code",
        "[{phone: {country_code: '+7'}}]",
        ["8 (495) 123-45-67", "0495 1234567", "+44 1"],
        ["+784951234567", "+74951234567", "+441"],
    ),
    (
        "date",
        "[{date: {from: ['%d.%m.%Y', '%Y-%m-%d'], to: '%d %b %Y'}}]",
        ["21.03.2026", "2026-03-22", " 01.01.2026 "],
        ["21 Mar 2026", "22 Mar 2026", "01 Jan 2026"],
    ),
    (
        "value map",
        "[{map: {values: {M: Male, f: Female}, otherwise: keep}}]",
        ["m", " F ", "X", None],
        ["Male", "Female", "X", None],
    ),
    (
        "value map leaving unknown codes empty",
        "[{map: {values: {M: Male}, otherwise: empty, ignore_case: false}}]",
        ["M", "m"],
        ["Male", None],
    ),
    (
        "regex replace",
        "[{replace: {pattern: '\\s*\\(.*\\)$', with: ''}}, {replace: {pattern: '(\\w+) Ltd', "
        "with: '\\1 Limited'}}]",
        ["Acme Ltd (UK)", "Other"],
        ["Acme Limited", "Other"],
    ),
    ("chain", "[trim, collapse_spaces, upper]", ["  a   b "], ["A B"]),
]


@pytest.mark.parametrize(
    ("steps", "values", "expected"),
    [c[1:] for c in TRANSFORM_CASES],
    ids=[c[0] for c in TRANSFORM_CASES],
)
def test_transform(tmp_path: Path, steps: str, values: list[Any], expected: list[Any]) -> None:
    assert _field(tmp_path, f"{{column: v, transforms: {steps}}}", values) == expected


PROBLEM_CASES = [
    (
        "date in another format",
        "[{date: {from: '%d.%m.%Y'}}]",
        "28.02.2026",
        "31/02/2026",
        "date_format: summary: '31/02/2026' does not match %d.%m.%Y",
    ),
    (
        "impossible date",
        "[{date: {from: ['%d.%m.%Y', '%Y-%m-%d']}}]",
        "1.3.2026",
        "31.02.2026",
        "date_format: summary: '31.02.2026' does not match %d.%m.%Y or %Y-%m-%d",
    ),
    (
        "day a common year lacks",
        "[{date: {from: '%Y-%m-%d'}}]",
        "2024-02-29",
        "2025-02-29",
        "date_format: summary: '2025-02-29' does not match %Y-%m-%d",
    ),
    (
        "code missing from a value map",
        "[trim, {map: {values: {A: Alpha, B: Beta}}}]",
        " b",
        " C ",
        "value_map: summary: 'C' is not a code of the map (A, B)",
    ),
]


@pytest.mark.parametrize(
    ("steps", "good", "value", "reason"),
    [c[1:] for c in PROBLEM_CASES],
    ids=[c[0] for c in PROBLEM_CASES],
)
def test_transform_problem_names_row_and_field(
    tmp_path: Path, steps: str, good: str, value: str, reason: str
) -> None:
    mapper = _mapper(tmp_path, f"fields:\n  summary: {{column: v, transforms: {steps}}}\n")
    frame = _frame([{"reg_id": "A", "v": good}, {"reg_id": "B", "v": value}], start=7)
    chunk = mapper.map(frame)
    assert chunk.problems == {8: [reason]}
    assert "summary" not in json.loads(chunk.rows.loc[8, "payload_json"])


def test_constants_defaults_and_templates(tmp_path: Path) -> None:
    mapper = _mapper(
        tmp_path,
        """\
        new_event_join_type: join_and_patch
        application_id: 77
        fields:
          first_name: {column: first, transforms: [trim]}
          last_name: {column: last, transforms: [trim]}
          name: {template: "{first_name} {last_name}"}
          job_title: {column: title, default: Guest}
          company_name: {const: Example Ltd}
          headline: {template: "{job_title|upper} - {company_name}"}
          location: {template: "{source.city|trim}, {source.country}"}
          summary: {template: "Dr. {last_name} ({source.city})!"}
        """,
    )
    frame = _frame(
        [
            {"reg_id": "A1", "first": " Anna ", "last": "Ivanova", "title": "cto", "city": "Riga",
             "country": "Latvia"},
            {"reg_id": "A2", "first": None, "last": "Smith", "title": "", "city": "  ",
             "country": "Spain"},
            {"reg_id": "A3", "first": "", "last": None, "title": None, "city": None,
             "country": None},
        ]
    )  # fmt: skip
    first, second, third = _payloads(mapper.map(frame))
    assert first == {
        "application_id": 77,
        "company_name": "Example Ltd",
        "default_container_id": 90001,
        "first_name": "Anna",
        "generate_relationships": 0,
        "headline": "CTO - Example Ltd",
        "job_title": "cto",
        "last_name": "Ivanova",
        "location": "Riga, Latvia",
        "location_code": "en-gb",
        "name": "Anna Ivanova",
        "new_event_join_type": "join_and_patch",
        "registration_id": "A1",
        "summary": "Dr. Ivanova (Riga)!",
        "type_id": 380,
    }
    # separators next to empty placeholders are dropped; defaults fill empty values
    assert second["name"] == "Smith"
    assert second["location"] == "Spain"
    assert second["job_title"] == "Guest"
    assert second["headline"] == "GUEST - Example Ltd"
    assert second["summary"] == "Dr. Smith"  # the text after the last goes with the last
    assert "first_name" not in second
    # a template whose placeholders are all empty gives no value at all
    assert "name" not in third
    assert "location" not in third
    assert "summary" not in third


def test_send_empty_writes_empty_values(tmp_path: Path) -> None:
    mapper = _mapper(
        tmp_path,
        "send_empty: true\nfields:\n  email: mail\nmetadata:\n  badge: {column: badge}\n",
    )
    (payload,) = _payloads(mapper.map(_frame([{"reg_id": "A", "mail": None, "badge": ""}])))
    assert payload["email"] == ""
    assert payload["metadata_raw"] == {"badge": []}


METADATA_CASES = [
    (
        "one value in the location code's language",
        "exhibitor_id: {column: a}",
        {"a": 65322},
        {"exhibitor_id": [{"en-gb": "65322"}]},
    ),
    (
        "one value in a chosen language",
        "city_ru: {column: a, language: ru-ru}",
        {"a": "Москва"},
        {"city_ru": [{"ru-ru": "Москва"}]},
    ),
    (
        "several values from a delimited column",
        "tags: {column: a, split: '|'}",
        {"a": " x | y||x |z"},
        {"tags": [{"en-gb": "x"}, {"en-gb": "y"}, {"en-gb": "z"}]},
    ),
    (
        "several values from several columns",
        "phones: {columns: [a, b, c]}",
        {"a": "1", "b": None, "c": "3"},
        {"phones": [{"en-gb": "1"}, {"en-gb": "3"}]},
    ),
    (
        "per-language columns",
        "org: {languages: {ru-ru: b, en-gb: a}, transforms: [trim]}",
        {"a": " Acme ", "b": "Акме"},
        {"org": [{"en-gb": "Acme", "ru-ru": "Акме"}]},
    ),
    (
        "per-language columns with one language empty",
        "org: {languages: {en-gb: a, ru-ru: b}}",
        {"a": "Acme", "b": ""},
        {"org": [{"en-gb": "Acme"}]},
    ),
    (
        "per-language columns split and paired by position",
        "cats: {languages: {en-gb: a, ru-ru: b}, split: ';'}",
        {"a": "Tours;Cruises;Ski", "b": "Туры;Круизы"},
        {
            "cats": [
                {"en-gb": "Tours", "ru-ru": "Туры"},
                {"en-gb": "Cruises", "ru-ru": "Круизы"},
                {"en-gb": "Ski"},
            ]
        },
    ),  # fmt: skip
    (
        "translated codes from a table, case and spaces ignored, repeats dropped",
        "cats: {column: a, split: ';', translate: table.csv}",
        {"a": "to; lei ;TO"},
        {
            "cats": [
                {"en-gb": "Tour Operator", "ru-ru": "Туроператор"},
                {"en-gb": "Leisure", "ru-ru": "Многопрофильный"},
            ]
        },
    ),  # fmt: skip
    (
        "a code with a text in one language only",
        "cats: {column: a, translate: table.csv}",
        {"a": "RU"},
        {"cats": [{"ru-ru": "Только"}]},
    ),
    (
        "translation into chosen languages",
        "cats: {column: a, split: ';', translate: table.csv, output_languages: [ru-ru]}",
        {"a": "TO;LEI"},
        {"cats": [{"ru-ru": "Туроператор"}, {"ru-ru": "Многопрофильный"}]},
    ),
    (
        "inline translation, unknown codes kept",
        "kind: {column: a, split: ',', translate: {VIP: {en-gb: Hosted buyer, ru-ru: Байер}},"
        " unknown: keep}",
        {"a": "vip,PRESS"},
        {"kind": [{"en-gb": "Hosted buyer", "ru-ru": "Байер"}, {"en-gb": "PRESS"}]},
    ),
    (
        "unknown codes dropped",
        "cats: {column: a, split: ';', translate: table.csv, unknown: drop}",
        {"a": "XX;TO"},
        {"cats": [{"en-gb": "Tour Operator", "ru-ru": "Туроператор"}]},
    ),
    ("a constant", "source: {const: partner feed}", {}, {"source": [{"en-gb": "partner feed"}]}),
    (
        "values needing JSON escapes",
        "note: {column: a, split: ';'}",
        {"a": 'say "hi";back\\slash;tab\there;ctl\x01'},
        {
            "note": [
                {"en-gb": 'say "hi"'},
                {"en-gb": "back\\slash"},
                {"en-gb": "tab\there"},
                {"en-gb": "ctl\x01"},
            ]
        },
    ),  # fmt: skip
    ("nothing at all", "tags: {column: a, split: ';'}", {"a": " ; "}, None),
]


@pytest.mark.parametrize(
    ("spec", "row", "expected"),
    [c[1:] for c in METADATA_CASES],
    ids=[c[0] for c in METADATA_CASES],
)
def test_metadata_shapes(
    tmp_path: Path, spec: str, row: dict[str, Any], expected: dict[str, Any] | None
) -> None:
    mapper = _mapper(tmp_path, f"metadata:\n  {spec}\n")
    columns = sorted(mapper.spec.required_columns - {"reg_id"})
    frame = _frame([{"reg_id": "R1", **{c: row.get(c) for c in columns}}])
    chunk = mapper.map(frame)
    (payload,) = _payloads(chunk)
    assert payload.get("metadata_raw") == expected
    assert chunk.problems == {}
    languages = chunk.rows["_languages"].iloc[0]
    if expected is None:
        assert pd.isna(languages)
    else:
        used = {lang for values in expected.values() for value in values for lang in value}
        assert languages == ",".join(sorted(used))


def test_unknown_translation_codes_are_row_problems(tmp_path: Path) -> None:
    mapper = _mapper(tmp_path, "metadata:\n  cats: {column: a, split: ';', translate: table.csv}\n")
    chunk = mapper.map(_frame([{"reg_id": "A", "a": "TO"}, {"reg_id": "B", "a": "TO;ZZ;QQ"}]))
    assert chunk.problems == {
        2: [
            "translation: metadata_raw.cats: 'ZZ' is not a code of table.csv (or has no text in "
            "en-gb, ru-ru)",
            "translation: metadata_raw.cats: 'QQ' is not a code of table.csv (or has no text in "
            "en-gb, ru-ru)",
        ]
    }


FILTER_CASES = [
    (
        "in, ignoring case and spaces",
        "in: [cancelled, void]",
        [" Cancelled", "VOID", "ok", None],
        2,
    ),
    ("not in", "not_in: [confirmed]", ["confirmed", "pending", None], 2),
    ("matches", "matches: '(?i)^test'", ["Test user", "contest", None], 1),
    ("empty", "empty: true", ["", "  ", None, "x"], 3),
    ("not empty", "empty: false", ["", "x", "y"], 2),
]


@pytest.mark.parametrize(
    ("test", "values", "dropped"), [c[1:] for c in FILTER_CASES], ids=[c[0] for c in FILTER_CASES]
)
def test_filter(tmp_path: Path, test: str, values: list[Any], dropped: int) -> None:
    mapper = _mapper(tmp_path, f"filters:\n  - {{name: drop, column: s, {test}}}\n")
    frame = _frame([{"reg_id": f"R{i}", "s": value} for i, value in enumerate(values)])
    chunk = mapper.map(frame)
    assert chunk.filtered == {"drop": dropped}
    assert len(chunk) == len(values) - dropped
    assert chunk.read == len(values)


def test_filters_count_a_row_once_under_the_first_that_matches(tmp_path: Path) -> None:
    mapper = _mapper(
        tmp_path,
        """\
        filters:
          - {name: cancelled, column: status, in: [cancelled]}
          - {name: test_registration, column: is_test, in: ["1", "true"]}
        """,
    )
    frame = _frame(
        [
            {"reg_id": "A", "status": "cancelled", "is_test": 1},
            {"reg_id": "B", "status": "ok", "is_test": True},
            {"reg_id": "C", "status": "ok", "is_test": 0},
            {"reg_id": "D", "status": "cancelled", "is_test": 0},
        ],
        start=10,
    )
    chunk = mapper.map(frame)
    assert chunk.filtered == {"cancelled": 2, "test_registration": 1}
    assert {name: rows.tolist() for name, rows in chunk.filtered_rows.items()} == {
        "cancelled": [10, 13],
        "test_registration": [11],
    }
    assert list(chunk.rows.index) == [12]
    assert list(chunk.rows["registration_id"]) == ["C"]


def test_key_from_several_columns(tmp_path: Path) -> None:
    mapper = _mapper(
        tmp_path,
        "key: {columns: [event, number], separator: '/', prefix: X-, transforms: [upper]}\n",
    )
    frame = _frame(
        [
            {"event": " ite26 ", "number": 17},
            {"event": "ite26", "number": None},
            {"event": "ite26", "number": 17.0},
        ]
    )
    keys = mapper.map(frame).rows["registration_id"]
    assert keys.iloc[0] == "X-ITE26/17"
    assert pd.isna(keys.iloc[1])
    assert keys.iloc[2] == "X-ITE26/17"  # integral floats (a column with gaps) lose the '.0'


def test_key_is_stable_from_run_to_run(tmp_path: Path) -> None:
    mapper = _mapper(tmp_path, "fields:\n  email: mail\n")
    rows = [{"reg_id": f"R{i}", "mail": f"u{i}@x.org"} for i in range(100)]
    first = mapper.map(_frame(rows)).rows
    # the same registrations in another order, at other row numbers
    again = mapper.map(_frame(rows[::-1], start=501)).rows
    assert dict(zip(first["registration_id"], first["payload_json"], strict=True)) == dict(
        zip(again["registration_id"], again["payload_json"], strict=True)
    )


def test_source_types_become_text(tmp_path: Path) -> None:
    mapper = _mapper(
        tmp_path,
        "metadata:\n  n: {columns: [i, f, g, b, d, t, o]}\n",
    )
    frame = _frame(
        [
            {"i": 65322, "f": 1.5, "g": 3.0, "b": True, "d": date(2026, 3, 2),
             "t": datetime(2026, 3, 2, 9, 15), "o": "x"},
            {"i": 7, "f": np.nan, "g": np.nan, "b": False, "d": None, "t": None, "o": 5},
        ]
    )  # fmt: skip
    frame["reg_id"] = ["A", "B"]
    frame["t"] = pd.to_datetime(frame["t"])
    first, second = _payloads(mapper.map(frame))
    values = [value["en-gb"] for value in first["metadata_raw"]["n"]]
    assert values == ["65322", "1.5", "3", "true", "2026-03-02", "2026-03-02 09:15:00", "x"]
    assert [value["en-gb"] for value in second["metadata_raw"]["n"]] == ["7", "false", "5"]


def test_missing_columns_fail_the_chunk(tmp_path: Path) -> None:
    mapper = _mapper(tmp_path, "fields:\n  email: mail\n  summary: bio\n")
    with pytest.raises(
        MappingError,
        match=r"mapping\.yaml: the source lacks column\(s\) bio, mail that the visitor mapping "
        r"reads; it has: reg_id, other",
    ):
        mapper.map(_frame([{"reg_id": "A", "other": 1}]))


def test_empty_chunk(tmp_path: Path) -> None:
    mapper = _mapper(tmp_path, "fields:\n  email: mail\nmetadata:\n  c: {column: c, split: ';'}\n")
    chunk = mapper.map(pd.DataFrame({"reg_id": [], "mail": [], "c": []}))
    assert len(chunk) == 0
    assert list(chunk.payloads()) == []


def test_distinct_value_path_matches_row_path(tmp_path: Path) -> None:
    """Columns that repeat are transformed once per distinct value; the text must not change."""
    mapper = _mapper(
        tmp_path,
        """\
        fields:
          first_name: {column: first, transforms: [trim, collapse_spaces]}
          job_title: {column: title, transforms: [{map: {values: {ceo: Chief}, otherwise: keep}}]}
          name: {template: "{first_name} {source.last}"}
          summary: {column: bio, transforms: [trim]}
        metadata:
          cats: {column: cats, split: ";", translate: table.csv, unknown: keep}
          day: {column: day, transforms: [{date: {from: "%d.%m.%Y"}}]}
        """,
    )
    rng = np.random.default_rng(3)
    size = 3000
    frame = _frame(
        [
            {
                "reg_id": f"R{i}",
                "first": rng.choice([" Anna", "Иван  Петрович", None, "O'Neil"]),
                "last": rng.choice(["Smith", "Кузнецов", ""]),
                "title": rng.choice(["ceo", "CTO", None]),
                "bio": rng.choice(['He said "hi"\n', "", "Обычный текст"]),
                "cats": rng.choice(["TO;LEI", "lei", "XX;TO", None]),
                "day": rng.choice(["01.02.2026", "2026-02-01", None]),
            }
            for i in range(size)
        ]
    )
    whole = mapper.map(frame)
    assert whole.rows["payload_json"].nunique() == size  # keys differ, so every text does
    one_by_one = [mapper.map(frame.iloc[[i]]) for i in range(0, size, 97)]
    for single in one_by_one:
        row = single.rows.index[0]
        assert single.rows.loc[row, "payload_json"] == whole.rows.loc[row, "payload_json"]
        assert single.problems.get(row) == whole.problems.get(row)
        one, both = single.rows.loc[row, "_languages"], whole.rows.loc[row, "_languages"]
        assert one == both or (pd.isna(one) and pd.isna(both))


def test_payloads_of_chosen_rows_and_selection(tmp_path: Path) -> None:
    mapper = _mapper(tmp_path, "fields:\n  email: mail\n")
    chunk = mapper.map(_frame([{"reg_id": f"R{i}", "mail": f"{i}@x.org"} for i in range(5)]))
    assert [p["registration_id"] for p in chunk.payloads([4, 2])] == ["R3", "R1"]
    picked = chunk.select(chunk.rows["registration_id"] != "R0")
    assert list(picked.rows.index) == [2, 3, 4, 5]


def test_fingerprint_follows_rules_and_tables_not_layout(tmp_path: Path) -> None:
    body = "metadata:\n  cats: {column: a, split: ';', translate: table.csv}\n"
    base = _mapper(tmp_path, body).spec.fingerprint
    relaid = (
        "# a comment\nmetadata:\n  cats:\n    column: a\n    split: ';'\n    translate: table.csv\n"
    )
    assert _mapper(tmp_path, relaid).spec.fingerprint == base
    assert _mapper(tmp_path, body.replace("';'", "','")).spec.fingerprint != base
    assert (
        _mapper(tmp_path, body, TABLE.replace("Leisure", "Leisure travel")).spec.fingerprint != base
    )
    assert len(base) == 64
    int(base, 16)


def test_required_columns(tmp_path: Path) -> None:
    mapper = _mapper(
        tmp_path,
        """\
        filters:
          - {name: cancelled, column: status, in: [x]}
        fields:
          email: mail
          location: {template: "{source.city}, {source.country}"}
        metadata:
          org: {languages: {en-gb: co, ru-ru: co_ru}}
          phones: {columns: [p1, p2]}
        """,
    )
    assert mapper.spec.required_columns == {
        "reg_id", "status", "mail", "city", "country", "co", "co_ru", "p1", "p2",
    }  # fmt: skip
