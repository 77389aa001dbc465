"""Golden tests of the demo mappings: the seed's example person comes out field for field."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from bench.datagen import exhibitors, representatives, visitors
from grip.config import load_integration
from grip.mapping import Mapper, MappingSpec, check_integration, load_mapping
from grip.payload import canonical_json

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = Path(__file__).resolve().parent / "golden"
DEMO = load_integration(ROOT / "include" / "integrations" / "demo.yaml")
APPLICATION = DEMO.spec.application


def _rows(name: str) -> pd.DataFrame:
    frame = pd.read_csv(GOLDEN / name, dtype=str, keep_default_na=False)
    frame.index = frame.index + 1
    return frame


def _spec(data_type: str) -> MappingSpec:
    return load_mapping(DEMO.mapping_path(data_type), APPLICATION)


def test_seed_example_is_reproduced_field_for_field() -> None:
    seed = json.loads((GOLDEN / "seed_exhibitor_payload.json").read_text(encoding="utf-8"))
    spec = _spec("exhibitor")
    chunk = Mapper(spec).map(_rows("seed_exhibitor_row.csv"))
    (payload,) = chunk.payloads()

    # the seed's event numbered its exhibitors 380; the demo event numbers them 381
    assert payload["type_id"] == 381
    assert seed["type_id"] == 380
    assert {**payload, "type_id": 380} == seed
    for field, value in seed.items():
        if field != "type_id":
            assert payload[field] == value, field

    # with the seed's type id the text is exactly the canonical JSON of the seed
    seed_typed = MappingSpec(
        spec.path, spec.model.model_copy(update={"type_id": 380}), spec.tables, APPLICATION
    )
    text = Mapper(seed_typed).map(_rows("seed_exhibitor_row.csv")).rows["payload_json"].iloc[0]
    assert text == canonical_json(seed)


@pytest.mark.parametrize("data_type", ["visitor", "representative"])
def test_demo_rows_give_the_reviewed_payloads(data_type: str) -> None:
    expected = json.loads((GOLDEN / f"demo_{data_type}_payloads.json").read_text(encoding="utf-8"))
    chunk = Mapper(_spec(data_type)).map(_rows(f"demo_{data_type}_rows.csv"))
    assert chunk.problems == {}
    got = {str(row): json.loads(text) for row, text in chunk.rows["payload_json"].items()}
    assert got == expected


def test_demo_visitor_rows_filter_the_cancelled_registration() -> None:
    chunk = Mapper(_spec("visitor")).map(_rows("demo_visitor_rows.csv"))
    assert chunk.filtered == {"cancelled": 1, "test_registration": 0}
    assert list(chunk.rows.index) == [1, 2]


def test_demo_integration_checks_clean_against_the_documented_columns() -> None:
    columns = {
        "visitor": list(_rows("demo_visitor_rows.csv").columns),
        "exhibitor": list(_rows("seed_exhibitor_row.csv").columns),
        "representative": list(_rows("demo_representative_rows.csv").columns),
    }
    assert check_integration(DEMO, columns) == []
    generated = {
        "visitor": list(visitors(5).columns),
        "exhibitor": list(exhibitors(5).columns),
        "representative": list(representatives(5).columns),
    }
    assert generated == columns


def test_demo_languages_and_types() -> None:
    for data_type, type_id in (("visitor", 380), ("exhibitor", 381), ("representative", 382)):
        spec = _spec(data_type)
        assert spec.type_id == type_id
        assert spec.model.default_container_id == 90001
        assert spec.model.generate_relationships == 1
        assert spec.model.new_event_join_type == "join_and_patch"
        assert set(spec.output_languages) <= {"en-gb", "ru-ru"}


@pytest.mark.parametrize(
    ("data_type", "generate"),
    [("visitor", visitors), ("exhibitor", exhibitors), ("representative", representatives)],
)
def test_payload_json_is_the_canonical_json_of_the_payload(data_type: str, generate) -> None:
    """On generated demo data (Cyrillic, quotes, newlines, bad rows) the column text equals
    canonical_json of the parsed payload, for every row."""
    frame = generate(3000, bad_share=0.05)
    chunk = Mapper(_spec(data_type)).map(frame)
    assert len(chunk) > 2500
    for text in chunk.rows["payload_json"]:
        assert text == canonical_json(json.loads(text))
