"""The sample: deterministic, covering data types, languages and often-empty fields."""

from __future__ import annotations

import random

import pytest

from grip.engine.sample import SampleSelector, payload_features


def _visitor(i: int, *, ru: bool = False, summary: bool = False) -> dict:
    values = [{"en-gb": f"topic {i}", **({"ru-ru": f"тема {i}"} if ru else {})}]
    return {
        "registration_id": f"V{i}",
        "first_name": f"First{i}",
        "summary": "Text" if summary else "",
        "metadata_raw": {"interests": values},
    }


def _exhibitor(i: int) -> dict:
    return {"registration_id": f"E{i}", "company_name": f"Company {i}", "metadata_raw": {}}


def _feed(selector: SampleSelector, records: list[tuple[str, dict]]) -> None:
    for data_type, payload in records:
        selector.offer(data_type, payload["registration_id"], payload)


def _population() -> list[tuple[str, dict]]:
    records = [("visitor", _visitor(i, ru=i % 97 == 5, summary=i % 53 == 7)) for i in range(1000)]
    records += [("exhibitor", _exhibitor(i)) for i in range(3)]
    return records


def test_features_of_a_payload() -> None:
    filled, languages = payload_features(
        "visitor",
        {
            "name": "A",
            "job_title": " ",
            "phone_number": None,
            "metadata_raw": {
                "k": [{"en-gb": "x", "RU-RU": "y", "de-de": "z"}],
                "empty": [{"en-gb": ""}],
                "single": {"ru-ru": "один"},
            },
        },
        ["en-gb", "ru-ru"],
    )
    assert filled == {"name", "metadata_raw.k", "metadata_raw.single"}
    assert languages == {"en-gb", "ru-ru"}


def test_sample_covers_types_languages_and_rare_fields() -> None:
    selector = SampleSelector(25, ["en-gb", "ru-ru"])
    _feed(selector, _population())
    chosen = selector.select()
    assert len(chosen) == 25
    assert len(set(chosen)) == 25
    assert {dt for dt, _ in chosen} == {"visitor", "exhibitor"}
    by_id = dict(_population_by_key())
    picked = [by_id[key] for key in chosen]
    assert any(
        "ru-ru" in p["metadata_raw"]["interests"][0]
        for p in picked
        if "E" not in p["registration_id"]
    )
    assert any(p.get("summary") for p in picked)
    coverage = selector.coverage()
    assert coverage["not_shown"] == []
    assert coverage["languages"] == ["en-gb", "ru-ru"]
    assert coverage["often_empty_fields"]["visitor"] == ["summary"]


def _population_by_key() -> list[tuple[tuple[str, str], dict]]:
    return [((dt, p["registration_id"]), p) for dt, p in _population()]


def test_sample_does_not_depend_on_order_or_chunking() -> None:
    records = _population()
    first = SampleSelector(25, ["en-gb", "ru-ru"])
    _feed(first, records)
    shuffled = records[:]
    random.Random(7).shuffle(shuffled)
    second = SampleSelector(25, ["en-gb", "ru-ru"])
    _feed(second, shuffled)
    assert first.select() == second.select()


@pytest.mark.parametrize(
    ("size", "available", "expected"), [(25, 8, 8), (10, 1003, 10), (50, 1003, 50)]
)
def test_sample_size_is_bounded_by_the_source(size, available, expected) -> None:
    selector = SampleSelector(size, ["en-gb"])
    _feed(selector, _population()[:available])
    assert len(selector.select()) == expected


def test_sample_spreads_over_data_types_when_filling() -> None:
    selector = SampleSelector(10, ["en-gb"])
    _feed(selector, [("visitor", _visitor(i)) for i in range(100)])
    _feed(selector, [("exhibitor", _exhibitor(i)) for i in range(100)])
    chosen = selector.select()
    kinds = [dt for dt, _ in chosen]
    assert kinds.count("visitor") == 5
    assert kinds.count("exhibitor") == 5
