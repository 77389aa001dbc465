"""The fast path of a sync: source row hashes and the ledger's index of unchanged rows."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from grip.engine.plan import LedgerIndex
from grip.engine.rowhash import row_hashes
from grip.ledger import STATE_COLUMNS


def _frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "name": pd.array(["Anna", "Иван", "", None], dtype="str"),
            "fee": [1.5, None, 3.0, 4.0],
            "count": pd.array([1, 2, None, 4], dtype="Int64"),
            "other": ["a", "b", "c", "d"],
        },
        index=pd.Index([1, 2, 3, 4], name="row"),
    )


def test_row_hash_is_stable_and_keyed() -> None:
    frame = _frame()
    hashes = row_hashes(frame, ["name", "fee", "count"], "fp1")
    assert hashes.dtype == np.int64
    assert len(set(hashes)) == 4
    assert list(row_hashes(frame, ["count", "name", "fee"], "fp1")) == list(hashes)
    assert list(row_hashes(frame.iloc[[2, 0]], ["name", "fee", "count"], "fp1")) == [
        hashes[2],
        hashes[0],
    ]
    assert not set(row_hashes(frame, ["name", "fee", "count"], "fp2")) & set(hashes)
    # a column the mapping does not read changes nothing
    changed = frame.assign(other=["x", "y", "z", "w"])
    assert list(row_hashes(changed, ["name", "fee", "count"], "fp1")) == list(hashes)
    assert len(row_hashes(frame.iloc[:0], ["name"], "fp1")) == 0


@pytest.mark.parametrize(
    ("column", "first", "second"),
    [
        ("name", "", None),
        ("name", "a b", "a  b"),
        ("name", "Anna", "anna"),
    ],
)
def test_row_hash_tells_values_apart(column: str, first, second) -> None:
    frame = pd.DataFrame({column: pd.array([first, second], dtype="str")})
    a, b = row_hashes(frame, [column], "fp")
    assert a != b


def test_columns_do_not_run_into_each_other() -> None:
    frame = pd.DataFrame({"a": ["ab", "a"], "b": ["c", "bc"]})
    a, b = row_hashes(frame, ["a", "b"], "fp")
    assert a != b


def _state(rows: list[tuple]) -> pd.DataFrame:
    """(data_type, registration_id, accepted, outcome, source_hash[, reason]) per record."""
    records = [(*row[:3], row[2], row[3], 1, None, row[4], (*row, None)[5]) for row in rows]
    columns = list(zip(*records, strict=True))
    numeric = {"last_seen_run_id", "vanished_run_id", "source_hash"}
    assert len(STATE_COLUMNS) == 9
    return pd.DataFrame(
        {
            name: pd.array(list(values), dtype="Int64" if name in numeric else "str")
            for name, values in zip(STATE_COLUMNS, columns, strict=True)
        }
    )


def test_only_records_grip_holds_unchanged_take_the_fast_path() -> None:
    big = 2**62 + 5
    index = LedgerIndex(
        _state(
            [
                ("visitor", "A", "h", "created", 11),
                ("visitor", "B", "h", "updated", 12),
                ("visitor", "C", "h", "unchanged", big),
                ("visitor", "D", "h", "failed", 14),
                ("visitor", "E", "h", "invalid", 15),
                ("visitor", "F", None, "rejected", 16),
                ("visitor", "G", "h", "created", None),
                ("visitor", "H", "h", "created", 20),
                ("visitor", "I", "h", "created", 20),
                ("exhibitor", "A", "h", "created", 11),
                ("visitor", "J", None, "invalid", 30, "email: 'x' is not an address"),
                ("visitor", "K", None, "invalid", 31, "unique_key: 'K' is already the key"),
            ]
        )
    )
    hashes = np.array([11, 12, big, 14, 15, 16, 20, 99, -1, 30, 31], dtype=np.int64)
    positions = index.fast_positions("visitor", hashes)
    ids = [None if p < 0 else index.registration_ids(np.array([p]))[0] for p in positions]
    assert ids == ["A", "B", "C", None, None, None, None, None, None, "J", None]
    assert list(index.outcomes(positions[[0, 9]])) == ["created", "invalid"]
    assert list(index.reasons(positions[[9]])) == ["email: 'x' is not an address"]
    assert index.fast_positions("exhibitor", np.array([11, 12]))[1] == -1
    assert index.fast_positions("representative", np.array([11]))[0] == -1

    index.mark_seen("visitor", positions[:2])
    assert list(index.seen_mask("visitor", positions[:3])) == [True, True, False]
    gone = index.vanished(["visitor"])
    assert list(gone["registration_id"]) == ["C", "D", "E", "G", "H", "I"]  # J, K: never in Grip
    assert list(index.source_hashes(np.array([0, 6, -1]))) == [11, None, None]
