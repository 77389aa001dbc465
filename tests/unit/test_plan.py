"""The plan: hashing, classification against the ledger, duplicates, vanished records, diffs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from grip.engine.plan import (
    Action,
    ExampleKeeper,
    KeyTable,
    LedgerIndex,
    PlanCounts,
    SortedKeys,
    diff_payloads,
    find_duplicates,
    hash_payloads,
    to_push,
)
from grip.ledger import STATE_COLUMNS
from grip.payload import canonical_json, content_hash


def _state(rows: list[tuple]) -> pd.DataFrame:
    """Ledger rows as (data_type, registration_id, accepted, sent, outcome)."""
    frame = pd.DataFrame(
        [(*row[:5], 1, None, row[5] if len(row) > 5 else None, None) for row in rows],
        columns=list(STATE_COLUMNS),
    )
    return frame.astype(
        {"last_seen_run_id": "Int64", "vanished_run_id": "Int64", "source_hash": "Int64"}
    )


def _index(
    rows: list[tuple], *, hashes: bool, asked: list | None = None, all_contents=None
) -> LedgerIndex:
    """A ledger index over ``rows`` (see :func:`_state`), with its content hashes or without.

    Without them the index asks a lookup over the same rows, noting each question in ``asked``.
    """
    state = _state(rows)
    if hashes:
        return LedgerIndex(state)
    contents = {
        (dt, rid): (accepted, sent, outcome) for dt, rid, accepted, sent, outcome, *_ in rows
    }

    def lookup(data_type: str, ids: list[str]) -> dict:
        if asked is not None:
            asked.append((data_type, sorted(ids)))
        return {rid: contents[(data_type, rid)] for rid in ids if (data_type, rid) in contents}

    lean = state.drop(columns=["accepted_hash", "sent_hash"])
    lean.insert(2, "accepted", state["accepted_hash"].notna().to_numpy(dtype=bool))
    return LedgerIndex(lean, contents=lookup, all_contents=all_contents)


def test_hash_ignores_key_order_and_whitespace() -> None:
    a = canonical_json({"b": 1, "a": {"y": [1, 2], "x": "Иван"}})
    b = canonical_json({"a": {"x": "Иван", "y": [1, 2]}, "b": 1})
    assert a == b
    hashes = hash_payloads([a, b, canonical_json({"a": 1})])
    assert hashes[0] == hashes[1] == content_hash(a)
    assert hashes[2] != hashes[0]


@pytest.mark.parametrize(
    ("ledger_row", "current", "expected"),
    [
        (None, "h1", Action.NEW),
        (("h1", "h1", "created"), "h1", Action.UNCHANGED),
        (("h1", "h1", "updated"), "h2", Action.CHANGED),
        (("h1", "h2", "failed"), "h2", Action.RETRY),
        (("h1", "h2", "failed"), "h1", Action.RETRY),
        ((None, "h2", "failed"), "h2", Action.RETRY),
        (("h1", "h2", "rejected"), "h2", Action.HELD),
        (("h1", "h2", "rejected"), "h3", Action.CHANGED),
        (("h1", "h2", "rejected"), "h1", Action.UNCHANGED),
        ((None, "h2", "rejected"), "h2", Action.HELD),
        ((None, "h2", "rejected"), "h3", Action.CHANGED),
        ((None, None, "invalid"), "h1", Action.NEW),
        (("h1", "h1", "invalid"), "h1", Action.UNCHANGED),
        (("h1", "h1", "invalid"), "h2", Action.CHANGED),
    ],
)
@pytest.mark.parametrize("hashes", [True, False], ids=["hashes", "looked-up"])
def test_classification_rules(ledger_row, current, expected, hashes: bool) -> None:
    rows = [] if ledger_row is None else [("visitor", "R1", *ledger_row)]
    index = _index(rows, hashes=hashes)
    actions = index.classify("visitor", np.array(["R1"], dtype=object), np.array([current]))
    assert list(actions) == [expected.value]


@pytest.mark.parametrize("hashes", [True, False], ids=["hashes", "looked-up"])
def test_classification_is_per_data_type_and_keeps_chunk_order(hashes: bool) -> None:
    asked: list = []
    index = _index(
        [
            ("visitor", "A", "ha", "ha", "created"),
            ("visitor", "B", "hb", "hb", "created"),
            ("exhibitor", "A", "hx", "hx", "created"),
        ],
        hashes=hashes,
        asked=asked,
    )
    ids = np.array(["C", "B", "A"], dtype=object)
    actions = index.classify("visitor", ids, np.array(["hc", "hb", "changed"], dtype=object))
    assert list(actions) == ["new", "unchanged", "changed"]
    # the exhibitor A is another record: same id, different data type
    assert list(index.classify("exhibitor", np.array(["A"]), np.array(["hx"]))) == ["unchanged"]
    assert list(index.classify("representative", np.array(["A"]), np.array(["hx"]))) == ["new"]
    # only records the ledger knows are asked about, by data type
    assert asked == ([] if hashes else [("visitor", ["A", "B"]), ("exhibitor", ["A"])])


@pytest.mark.parametrize("hashes", [True, False], ids=["hashes", "looked-up"])
def test_vanished_are_the_accepted_records_the_run_did_not_see(hashes: bool) -> None:
    index = _index(
        [
            ("visitor", "A", "ha", "ha", "created"),
            ("visitor", "B", "hb", "hb", "created"),
            ("visitor", "C", None, None, "invalid"),
            ("visitor", "D", "hd", "hd", "updated"),
            ("exhibitor", "E", "he", "he", "created"),
        ],
        hashes=hashes,
    )
    index.classify("visitor", np.array(["A"]), np.array(["ha"]))
    index.classify("visitor", np.array(["D", "Z"]), np.array(["x", "z"]))
    gone = index.vanished(["visitor"])
    # C was never accepted: nothing of it is in Grip, so nothing vanished from Grip's view
    assert list(gone["registration_id"]) == ["B"]
    assert list(index.vanished(["visitor", "exhibitor"])["registration_id"]) == ["B", "E"]


@pytest.mark.parametrize("hashes", [True, False], ids=["hashes", "looked-up"])
def test_empty_ledger_plans_everything_new(hashes: bool) -> None:
    index = _index([], hashes=hashes)
    actions = index.classify("visitor", np.array(["A", "B"]), np.array(["1", "2"]))
    assert list(actions) == ["new", "new"]
    assert index.vanished(["visitor"]).empty
    none = index.fast_positions("visitor", np.array([1, 2], dtype=np.int64))
    assert list(none) == [-1, -1]
    assert len(index.seen_mask("visitor", none[none >= 0])) == 0
    index.mark_seen("visitor", none[none >= 0])
    assert index.returned("visitor") == []


@pytest.mark.parametrize(
    ("stage", "expected"),
    [
        ("sync", [True, True, False, True, False]),
        ("full", [True, True, False, True, True]),
    ],
)
def test_what_each_stage_pushes(stage, expected) -> None:
    actions = np.array(["new", "changed", "unchanged", "retry", "held"], dtype=object)
    assert list(to_push(actions, stage)) == expected


def test_duplicates_across_chunks_and_data_types_reject_every_copy() -> None:
    keys = pd.DataFrame(
        {
            "data_type": ["visitor", "visitor", "exhibitor", "visitor", "visitor"],
            "registration_id": ["A", "B", "A", "C", "B"],
            "source_row": [1, 2, 1, 3, 9],
        }
    )
    found = find_duplicates(keys)
    assert sorted(
        zip(found["data_type"], found["registration_id"], found["source_row"], strict=True)
    ) == [
        ("exhibitor", "A", 1),
        ("visitor", "A", 1),
        ("visitor", "B", 2),
        ("visitor", "B", 9),
    ]
    reason = found.loc[found["registration_id"] == "B", "reason"].iloc[0]
    assert "occurs 2 times" in reason
    assert "visitor row 2" in reason
    assert "visitor row 9" in reason
    assert find_duplicates(keys.iloc[[0, 1, 3]]).empty


def test_counts_add_up() -> None:
    counts = PlanCounts()
    counts.add(np.array(["new", "new", "unchanged", "retry"], dtype=object))
    counts.add(np.array(["held", "changed"], dtype=object))
    counts.remove(["new"])
    assert counts.as_dict() == {
        "new": 1,
        "changed": 1,
        "unchanged": 1,
        "retry": 1,
        "held": 1,
        "vanished": 0,
    }
    assert counts.total == 5


def test_diff_shows_fields_and_metadata_keys() -> None:
    old = {"name": "Ann", "email": "a@x", "metadata_raw": {"k": [{"en-gb": "1"}], "z": []}}
    new = {"name": "Anne", "email": "a@x", "metadata_raw": {"k": [{"en-gb": "2"}]}, "x": 1}
    assert diff_payloads(old, new) == [
        ("metadata_raw.k", [{"en-gb": "1"}], [{"en-gb": "2"}]),
        ("metadata_raw.z", [], None),
        ("name", "Ann", "Anne"),
        ("x", None, 1),
    ]


def test_example_keeper_keeps_the_first_changed_records() -> None:
    keeper = ExampleKeeper(limit=2)
    ids = np.array(["A", "B", "C", "D"], dtype=object)
    payloads = np.array([canonical_json({"n": i}) for i in range(4)], dtype=object)
    keeper.offer("visitor", ids, payloads, np.array(["new", "changed", "changed", "changed"]))
    keeper.offer("visitor", ids, payloads, np.array(["changed"] * 4))
    assert [key for _, key, _ in keeper.items] == ["B", "C"]
    changes = keeper.changes({("visitor", "B"): canonical_json({"n": 0})})
    assert [(c.registration_id, c.field, c.old, c.new) for c in changes] == [("B", "n", 0, 1)]


def test_index_scales_to_a_million_records() -> None:
    n = 1_000_000
    ids = np.array([f"R{i:07d}" for i in range(n)], dtype=object)
    state = pd.DataFrame(
        {
            "data_type": "visitor",
            "registration_id": ids,
            "accepted_hash": ids,
            "sent_hash": ids,
            "last_outcome": "created",
            "last_seen_run_id": 1,
            "vanished_run_id": None,
            "source_hash": None,
            "last_reason": None,
        }
    )
    index = LedgerIndex(state)
    hashes = ids.copy()
    hashes[::1000] = "different"
    actions = np.concatenate(
        [
            index.classify("visitor", ids[i : i + 50_000], hashes[i : i + 50_000])
            for i in range(0, n, 50_000)
        ]
    )
    counts = PlanCounts()
    counts.add(actions)
    assert counts.changed == 1000
    assert counts.unchanged == n - 1000
    assert index.vanished(["visitor"]).empty


def test_sorted_keys_find_each_row_and_miss_what_is_not_there():
    rng = np.random.default_rng(3)
    keys = rng.integers(-(2**63), 2**63 - 1, 5000, dtype=np.int64)
    rows = np.arange(5000, dtype=np.int64) * 7
    index = SortedKeys(keys, rows)
    wanted = np.concatenate([keys[::-1], [keys.max() + 1, keys.min() - 1, 12345]])

    found = index.rows_of(wanted)

    assert found[:5000].tolist() == rows[::-1].tolist()
    assert found[5000:].tolist() == [-1, -1, -1]
    assert index.rows_of(np.array([], dtype=np.int64)).tolist() == []
    assert (
        SortedKeys(np.array([], dtype=np.int64), np.array([])).rows_of(keys[:3]).tolist()
        == [-1] * 3
    )


def test_sorted_keys_drop_a_shared_key_or_keep_its_first_row():
    keys = np.array([5, 9, 5, 1, 5], dtype=np.int64)
    rows = np.array([10, 11, 12, 13, 14], dtype=np.int64)

    assert SortedKeys(keys, rows, drop_shared=True).rows_of(keys).tolist() == [-1, 11, -1, 13, -1]
    assert SortedKeys(keys, rows).rows_of(np.array([5, 1])).tolist() == [10, 13]


def test_key_table_finds_what_sorted_keys_find() -> None:
    rng = np.random.default_rng(5)
    keys = rng.integers(-(2**63), 2**63 - 1, 20_000, dtype=np.int64)
    # keys that share their low bits (a slot) but not the rest, and keys that occur twice
    keys[100:200] = (keys[100:200] & ~np.int64(0xFFFFF)) | np.int64(0x12345)
    keys[300:310] = keys[400:410]
    rows = np.arange(len(keys), dtype=np.int64) * 3
    wanted = np.concatenate([keys[::-1], rng.integers(-(2**63), 2**63 - 1, 1000, dtype=np.int64)])

    table = KeyTable(keys, rows)
    found = table.rows_of(wanted)

    assert found.tolist() == SortedKeys(keys, rows, drop_shared=True).rows_of(wanted).tolist()
    mine = found[: len(keys)][::-1]  # in the order of keys
    assert mine[100:200].tolist() == rows[100:200].tolist()  # found in the shared part
    assert (mine[300:310] == -1).all()
    assert (mine[400:410] == -1).all()
    assert (mine[:100] == rows[:100]).all()
    assert len(table) == len(keys)
    assert table.rows_of(np.array([], dtype=np.int64)).tolist() == []
    empty = KeyTable(np.array([], dtype=np.int64), np.array([], dtype=np.int64))
    assert empty.rows_of(keys[:3]).tolist() == [-1] * 3


def test_a_state_without_hashes_needs_a_lookup() -> None:
    lean = _state([]).drop(columns=["accepted_hash", "sent_hash"]).assign(accepted=False)
    with pytest.raises(ValueError, match="look them up"):
        LedgerIndex(lean)


def test_a_run_that_asks_about_many_records_takes_every_hash_at_once(monkeypatch) -> None:
    import grip.engine.plan as plan

    monkeypatch.setattr(plan, "LOOKUPS_BEFORE_BULK", 3)
    rows = [("visitor", f"R{i}", f"h{i}", f"h{i}", "created") for i in range(10)]
    rows.append(("exhibitor", "R1", "x1", "x2", "rejected"))
    asked: list = []
    loads: list[int] = []

    def every_hash() -> pd.DataFrame:
        loads.append(1)
        return _state(rows[::-1])  # in another order than the index's state

    index = _index(rows, hashes=False, asked=asked, all_contents=every_hash)
    first = index.classify("visitor", np.array(["R0", "R1", "new"]), np.array(["h0", "x", "n"]))
    assert list(first) == ["unchanged", "changed", "new"]
    assert (len(asked), loads) == (1, [])
    ids = np.array([f"R{i}" for i in range(2, 10)])
    later = index.classify("visitor", ids, np.array([f"h{i}" for i in range(2, 9)] + ["other"]))
    assert list(later) == ["unchanged"] * 7 + ["changed"]
    assert (len(asked), loads) == (1, [1])  # asked one by one no more
    held = index.classify("exhibitor", np.array(["R1"]), np.array(["x2"]))
    assert list(held) == ["held"]
    assert len(asked) == 1
