"""The plan: which records to push, by comparing content hashes with the ledger in column form."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from grip.ledger.models import FATE_INVALID, HOLDS_ACCEPTED
from grip.ledger.repository import DUPLICATE_RULE
from grip.payload import content_hash


class Action(StrEnum):
    """What the plan decided for one valid record.

    - ``new``: Grip has never accepted the record.
    - ``changed``: its content differs from what Grip accepted (or was last refused).
    - ``unchanged``: Grip accepted exactly this content; nothing to send.
    - ``retry``: the last push failed (no answer after the retry budget); send it again.
    - ``held``: Grip rejected exactly this content before; a sync does not send it again until
      it changes, a full run does.
    """

    NEW = "new"
    CHANGED = "changed"
    UNCHANGED = "unchanged"
    RETRY = "retry"
    HELD = "held"


ACTIONS = tuple(Action)
PUSHED_BY_SYNC = frozenset({Action.NEW, Action.CHANGED, Action.RETRY})
PUSHED_BY_FULL = frozenset({Action.NEW, Action.CHANGED, Action.RETRY, Action.HELD})
TEXT = pd.ArrowDtype(pa.string())
KEY = ("data_type", "registration_id")
LOOKUPS_BEFORE_BULK = 20_000
"""Records a run asks the ledger about one by one before it reads every record's hashes."""
ContentLookup = Callable[[str, list[str]], Mapping[str, tuple[str | None, str | None, str | None]]]
"""``(data_type, registration_ids) -> {registration_id: (accepted, sent, last outcome)}``."""


def hash_payloads(payload_json: Iterable[str]) -> np.ndarray:
    """Return the content hash of each canonical JSON text, as an object array of hex digests."""
    return np.fromiter((content_hash(text) for text in payload_json), dtype=object)


class SortedKeys:
    """64-bit keys sorted once and found by binary search, each with the row it stands for.

    For a million source hashes this is built several times faster than a hash index and
    looked up about as fast, and numpy does both without holding the interpreter.

    Args:
        keys: the keys, in any order.
        rows: the row each key stands for.
        drop_shared: leave out every key that occurs more than once (no row can be told).
            Otherwise a key that occurs more than once stands for its first row.
    """

    def __init__(self, keys: np.ndarray, rows: np.ndarray, *, drop_shared: bool = False):
        keys = np.asarray(keys, dtype=np.int64)
        # a stable order only matters where a shared key must stand for its first row
        order = np.argsort(keys, kind="quicksort" if drop_shared else "stable")
        self.keys = keys[order]
        self.rows = np.asarray(rows, dtype=np.int64)[order]
        if drop_shared and len(self.keys) > 1:
            same = self.keys[1:] == self.keys[:-1]
            shared = np.zeros(len(self.keys), dtype=bool)
            shared[1:] |= same
            shared[:-1] |= same
            self.keys, self.rows = self.keys[~shared], self.rows[~shared]

    def __len__(self) -> int:
        return len(self.keys)

    def rows_of(self, wanted: np.ndarray) -> np.ndarray:
        """The row of each wanted key, or -1 where the key is not there."""
        wanted = np.asarray(wanted, dtype=np.int64)
        out = np.full(len(wanted), -1, dtype=np.int64)
        if not len(self.keys) or not len(wanted):
            return out
        # NOTE: searched in sorted order, each search starts where the last one ended: several
        # times faster than random probes into a table larger than the CPU's caches
        order = np.argsort(wanted)
        at = np.empty(len(wanted), dtype=np.int64)
        at[order] = np.searchsorted(self.keys, wanted[order])
        np.minimum(at, len(self.keys) - 1, out=at)
        found = self.keys[at] == wanted
        out[found] = self.rows[at[found]]
        return out


class KeyTable:
    """Unique 64-bit keys found through a table addressed by their low bits, each with its row.

    The table has four slots per key: a key alone in its slot is found with one probe and
    one comparison; the keys that share a slot (about a fifth) go to a :class:`SortedKeys`.
    Built and searched by numpy in a few passes, about three times faster than sorting every
    key. A key that occurs more than once stands for no row (no row can be told).

    Args:
        keys: the keys, in any order.
        rows: the row each key stands for.
    """

    def __init__(self, keys: np.ndarray, rows: np.ndarray):
        self.keys = np.asarray(keys, dtype=np.int64)
        self.rows = np.asarray(rows, dtype=np.int64)
        bits = max((4 * len(self.keys) - 1).bit_length(), 4)
        self.mask = np.int64((1 << bits) - 1)
        slots = self.keys & self.mask
        # NOTE: -1 marks an empty slot, -2 a slot that several keys share
        table = np.full(1 << bits, -1, dtype=np.int32 if len(self.keys) < 2**31 else np.int64)
        index = np.arange(len(self.keys), dtype=table.dtype)
        table[slots] = index  # where keys share a slot, one of them is written last
        table[slots[table[slots] != index]] = -2
        shared = table[slots] == -2
        self.table = table
        self.shared = SortedKeys(self.keys[shared], self.rows[shared], drop_shared=True)

    def __len__(self) -> int:
        return len(self.keys)

    def rows_of(self, wanted: np.ndarray) -> np.ndarray:
        """The row of each wanted key, or -1 where the key is not there (or is not unique)."""
        wanted = np.asarray(wanted, dtype=np.int64)
        out = np.full(len(wanted), -1, dtype=np.int64)
        if not len(self.keys) or not len(wanted):
            return out
        at = self.table[wanted & self.mask]
        alone = np.flatnonzero(at >= 0)
        index = at[alone]
        found = self.keys[index] == wanted[alone]
        out[alone[found]] = self.rows[index[found]]
        shared = at == -2
        if shared.any():
            out[shared] = self.shared.rows_of(wanted[shared])
        return out


class LedgerIndex:
    """The ledger's side of a plan for one integration, indexed once per run.

    Args:
        state: the frame of :meth:`grip.ledger.Ledger.load_state` (one row per record), with
            the content hashes or without them.
        fates: the frame of :meth:`grip.ledger.Ledger.load_fates`, for a sync's fast path.
        contents: for a state without hashes, ``(data_type, registration_ids)`` ->
            ``{registration_id: (accepted_hash, sent_hash, last_outcome)}``
            (:meth:`grip.ledger.Ledger.content_state`), asked about the records a run
            classifies.
        all_contents: for a state without hashes, loads the state with them
            (:meth:`grip.ledger.Ledger.load_state`): once a run has asked about more than
            :data:`LOOKUPS_BEFORE_BULK` records (or a twentieth of them, if more), every
            record's hashes are taken at once instead.

    Columns stay in Arrow form; Python objects are made only for the rows a run asks about,
    and each data type's index of registration ids is built the first time it is needed. The
    index also remembers which records the run has seen, for :meth:`vanished`, and which
    source row claimed each record on the fast path (:meth:`claimed_by`).
    """

    def __init__(
        self,
        state: pd.DataFrame,
        fates: pd.DataFrame | None = None,
        contents: ContentLookup | None = None,
        all_contents: Callable[[], pd.DataFrame] | None = None,
    ):
        self.state = state.reset_index(drop=True)
        self._hashes = "accepted_hash" in self.state
        if not self._hashes and contents is None:
            raise ValueError("a ledger state without content hashes needs a way to look them up")
        self._contents = contents
        self._all_contents = all_contents
        self._asked = 0
        self._accepted = accepted_mask(self.state)
        names = ("data_type", "source_hash", "registration_id", "reasons", "outcome")
        empty: dict[str, list[Any]] = {name: [] for name in names}
        self.fates = fates.reset_index(drop=True) if fates is not None else pd.DataFrame(empty)
        self._fate_index: dict[str, SortedKeys] = {}
        self._arrow: dict[str, pa.Array] = {}
        self._index: dict[str, pd.Index] = {}
        self._rows: dict[str, np.ndarray] = {}
        self._seen: dict[str, np.ndarray] = {}
        self._fast: dict[str, KeyTable] = {}
        types = self._column("data_type")
        for data_type in pc.unique(types).to_pylist():
            mask = pc.fill_null(pc.equal(types, data_type), False)
            rows = np.flatnonzero(mask.to_numpy(zero_copy_only=False))
            self._rows[str(data_type)] = rows
            self._seen[str(data_type)] = np.zeros(len(rows), dtype=bool)
        self._claimed_by = np.full(len(self.state), -1, dtype=np.int64)
        self._invalid: np.ndarray | None = None
        self._fate_record: np.ndarray | None = None
        self._fate_record_done: set[str] = set()
        if "source_hash" in self.state:
            source = self.state["source_hash"]
            self._has_source = source.notna().to_numpy()
            self._source = source.astype("Int64").to_numpy(dtype=np.int64, na_value=0)
        else:
            self._has_source = np.zeros(len(self.state), dtype=bool)
            self._source = np.zeros(len(self.state), dtype=np.int64)

    def __len__(self) -> int:
        return len(self.state)

    def _column(self, name: str, frame: pd.DataFrame | None = None) -> pa.Array:
        """A text column as one Arrow array (nulls where the ledger has none)."""
        frame = self.state if frame is None else frame
        key = name if frame is self.state else f"fates.{name}"
        if key not in self._arrow:
            if name not in frame:
                array = pa.nulls(len(frame), pa.string())
            else:
                array = pa.array(frame[name].astype(TEXT).array)
                if isinstance(array, pa.ChunkedArray):
                    array = array.combine_chunks()
            self._arrow[key] = array
        return self._arrow[key]

    def _take(self, name: str, positions: np.ndarray) -> np.ndarray:
        """Values of a text column at ledger rows, as Python objects (None for -1 or null)."""
        positions = np.asarray(positions, dtype=np.int64)
        known = positions >= 0
        if not known.any():
            return np.full(len(positions), None, dtype=object)
        taken = self._column(name).take(pa.array(np.where(known, positions, 0)))
        out = np.asarray(taken.to_pylist(), dtype=object)
        out[~known] = None
        return out

    def positions(
        self, data_type: str, registration_ids: pd.Series | np.ndarray, *, mark: bool = True
    ) -> np.ndarray:
        """Return each id's row in :attr:`state`, or -1 when the ledger does not know it.

        Marks the records found as seen by this run, unless ``mark`` is False.
        """
        rows = self._rows.get(data_type)
        if rows is None or not len(registration_ids):
            return np.full(len(registration_ids), -1, dtype=np.int64)
        if data_type not in self._index:
            ids = self._column("registration_id").take(pa.array(rows))
            self._index[data_type] = pd.Index(pd.array(ids, dtype=TEXT))
        index = self._index[data_type]
        local = index.get_indexer(pd.Index(np.asarray(registration_ids, dtype=object), dtype=TEXT))
        found = local >= 0
        if mark:
            self._seen[data_type][local[found]] = True
        out = np.full(len(local), -1, dtype=np.int64)
        out[found] = rows[local[found]]
        return out

    def classify(
        self, data_type: str, registration_ids: pd.Series | np.ndarray, hashes: np.ndarray
    ) -> np.ndarray:
        """Decide the :class:`Action` of each record of a chunk; returns an array of values.

        Marks the records as seen by this run.
        """
        return self.classify_positions(self.positions(data_type, registration_ids), hashes)

    def classify_positions(self, positions: np.ndarray, hashes: np.ndarray) -> np.ndarray:
        """Classify records whose ledger rows are known (from :meth:`positions`)."""
        if not self._hashes and self._all_contents is not None:
            self._asked += int((positions >= 0).sum())
            if self._asked > max(LOOKUPS_BEFORE_BULK, len(self.state) // 20):
                self._adopt_hashes(self._all_contents())
        if self._hashes:
            accepted = self._take("accepted_hash", positions)
            sent = self._take("sent_hash", positions)
            outcome = self._take("last_outcome", positions)
        else:
            accepted, sent, outcome = self._looked_up(positions)
        return decide(positions >= 0, hashes, accepted, sent, outcome)

    def _adopt_hashes(self, contents: pd.DataFrame) -> None:
        """Take every record's accepted and sent hashes from a state frame that has them.

        For a run that asks about many records (a sync after a grip-sync release changed
        every source hash, say): one read of every record costs less than many small ones.
        """
        where = np.full(len(self.state), -1, dtype=np.int64)
        types = contents["data_type"].astype(object).to_numpy()
        ids = contents["registration_id"].astype(object).to_numpy()
        for data_type in dict.fromkeys(types.tolist()):
            mine = np.flatnonzero(types == data_type)
            positions = self.positions(str(data_type), ids[mine], mark=False)
            found = positions >= 0
            where[positions[found]] = mine[found]
        picks = pa.array(where, mask=where < 0)
        for name in ("accepted_hash", "sent_hash"):
            column = pa.array(contents[name].astype(TEXT).array)
            if isinstance(column, pa.ChunkedArray):
                column = column.combine_chunks()
            self._arrow[name] = column.take(picks)
        self._hashes = True

    def _looked_up(self, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Accepted hash, sent hash and last outcome of ledger rows, asked of the ledger."""
        assert self._contents is not None
        out = [np.full(len(positions), None, dtype=object) for _ in range(3)]
        known = np.flatnonzero(positions >= 0)
        if not len(known):
            return out[0], out[1], out[2]
        ids = self._take("registration_id", positions[known])
        types = self._take("data_type", positions[known])
        for data_type in dict.fromkeys(types.tolist()):
            mine = types == data_type
            found = self._contents(str(data_type), [str(rid) for rid in ids[mine]])
            missing = (None, None, None)
            values = [found.get(str(rid), missing) for rid in ids[mine]]
            for column, picked in zip(out, zip(*values, strict=True), strict=True):
                column[known[mine]] = picked
        return out[0], out[1], out[2]

    def fast_positions(self, data_type: str, source_hashes: np.ndarray) -> np.ndarray:
        """Return the ledger row of each source row whose fate is known already, else -1.

        A source row qualifies when a record of the data type was last accepted (or found
        unchanged) from a source row with this very hash: it maps to exactly the payload Grip
        holds and passes validation. It also qualifies when the record was last set aside by
        validation from such a row (for a reason of its own, not a repeated id): it fails again
        for the same reasons (see :meth:`outcomes` and :meth:`reasons`). The hash is keyed by
        everything that shapes a payload (``grip.engine.rowhash.source_seed``). Does not mark
        anything seen (see :meth:`mark_seen`).
        """
        if data_type not in self._fast:
            self._fast[data_type] = self._build_fast(data_type)
        return self._fast[data_type].rows_of(source_hashes)

    def _build_fast(self, data_type: str) -> KeyTable:
        rows = self._rows.get(data_type, np.array([], dtype=np.int64))

        def pick(name: str) -> pa.Array:
            column = self._column(name)
            # NOTE: most integrations have one data type: its rows are the whole column
            whole = len(rows) == len(column)
            return column if whole else column.take(pa.array(rows, type=pa.int64()))

        outcome = pick("last_outcome")
        reason = pick("last_reason")
        holds = pc.fill_null(pc.is_in(outcome, pa.array(list(HOLDS_ACCEPTED))), False)
        invalid = pc.and_(
            pc.fill_null(pc.equal(outcome, "invalid"), False),
            pc.fill_null(pc.invert(pc.match_substring(reason, DUPLICATE_RULE)), False),
        )
        eligible = (holds.to_numpy(zero_copy_only=False) & self._accepted[rows]) | invalid.to_numpy(
            zero_copy_only=False
        )
        rows = rows[eligible & self._has_source[rows]]
        # NOTE: a hash shared by two records cannot tell them apart: both take the full path
        return KeyTable(self._source[rows], rows)

    def fate_positions(self, data_type: str, source_hashes: np.ndarray) -> np.ndarray:
        """Return the row in :attr:`fates` of each source row set aside before, else -1."""
        if data_type not in self._fate_index:
            rows = np.flatnonzero((self.fates["data_type"] == data_type).to_numpy(dtype=bool))
            hashes = self.fates["source_hash"].iloc[rows].astype("Int64")
            known = hashes.notna().to_numpy()
            self._fate_index[data_type] = SortedKeys(
                hashes.to_numpy(dtype=np.int64, na_value=0)[known], rows[known]
            )
        return self._fate_index[data_type].rows_of(source_hashes)

    def fate_records(self, data_type: str, positions: np.ndarray) -> np.ndarray:
        """The ledger row of the record each set-aside row's registration id names (-1: none).

        Computed once per data type by probing the data type's ids against the few ids of
        its set-aside rows, not by indexing a million ids.
        """
        if self._fate_record is None:
            self._fate_record = np.full(len(self.fates), -1, dtype=np.int64)
        if data_type not in self._fate_record_done:
            self._fate_record_done.add(data_type)
            mine = np.flatnonzero(
                ((self.fates["data_type"] == data_type) & self.fates["registration_id"].notna())
                .fillna(False)
                .to_numpy(dtype=bool)
            )
            rows = self._rows.get(data_type)
            if len(mine) and rows is not None:
                wanted = self._column("registration_id", self.fates).take(pa.array(mine))
                ids = self._column("registration_id")
                if len(rows) != len(ids):
                    ids = ids.take(pa.array(rows))
                hit = pc.index_in(ids, value_set=pc.drop_null(wanted))
                found = np.flatnonzero(pc.is_valid(hit).to_numpy(zero_copy_only=False))
                by_id = dict(
                    zip(ids.take(pa.array(found)).to_pylist(), rows[found].tolist(), strict=True)
                )
                for fate_row, rid in zip(mine, wanted.to_pylist(), strict=True):
                    self._fate_record[fate_row] = by_id.get(rid, -1)
        return self._fate_record[positions]

    def fate_ids(self, positions: np.ndarray) -> np.ndarray:
        """The registration ids (None where the row had none) of set-aside rows."""
        taken = self._column("registration_id", self.fates).take(pa.array(positions))
        return np.asarray(taken.to_pylist(), dtype=object)

    def fate_outcomes(self, positions: np.ndarray) -> np.ndarray:
        """What set each row aside: ``invalid`` (validation) or ``filtered`` (a filter)."""
        taken = self._column("outcome", self.fates).take(pa.array(positions, type=pa.int64()))
        return np.asarray(pc.fill_null(taken, FATE_INVALID).to_pylist(), dtype=object)

    def fate_reasons(self, positions: np.ndarray) -> np.ndarray:
        """The reasons of set-aside rows."""
        taken = self._column("reasons", self.fates).take(pa.array(positions))
        return np.asarray(taken.to_pylist(), dtype=object)

    def mark_seen(
        self, data_type: str, positions: np.ndarray, source_rows: np.ndarray | None = None
    ) -> None:
        """Mark ledger rows (positions in :attr:`state`) as seen in the source by this run.

        ``source_rows`` are the rows that claimed them (see :meth:`claimed_by`).
        """
        if not len(positions):
            return
        self._seen[data_type][self._local(data_type, positions)] = True
        if source_rows is not None:
            self._claimed_by[positions] = source_rows

    def seen_mask(self, data_type: str, positions: np.ndarray) -> np.ndarray:
        """Whether each ledger row (position in :attr:`state`) was seen already by this run."""
        if not len(positions):
            return np.zeros(0, dtype=bool)
        return self._seen[data_type][self._local(data_type, positions)]

    def _local(self, data_type: str, positions: np.ndarray) -> np.ndarray:
        """Positions in :attr:`state` as positions among the data type's rows."""
        rows = self._rows[data_type]
        # NOTE: the rows of an integration's only data type are the whole state, in order
        return positions if len(rows) == len(self.state) else np.searchsorted(rows, positions)

    def claimed_by(self, positions: np.ndarray) -> np.ndarray:
        """The source row that claimed each ledger row on the fast path (-1: none)."""
        return self._claimed_by[positions]

    def registration_ids(self, positions: np.ndarray) -> np.ndarray:
        """The registration ids of ledger rows."""
        return self._take("registration_id", positions)

    def source_hashes(self, positions: np.ndarray) -> np.ndarray:
        """The stored source hash of ledger rows (None where a row has none or is -1)."""
        known = positions >= 0
        safe = np.where(known, positions, 0)
        out = self._source[safe].astype(object)
        out[~(known & self._has_source[safe])] = None
        return out

    def reasons(self, positions: np.ndarray) -> np.ndarray:
        """The last reason of ledger rows."""
        return self._take("last_reason", positions)

    def is_invalid(self, positions: np.ndarray) -> np.ndarray:
        """Whether each ledger row was last set aside by validation."""
        if self._invalid is None:
            found = pc.equal(self._column("last_outcome"), "invalid")
            self._invalid = pc.fill_null(found, False).to_numpy(zero_copy_only=False)
        return self._invalid[positions]

    def outcomes(self, positions: np.ndarray) -> np.ndarray:
        """The last outcome of ledger rows (None for -1)."""
        return self._take("last_outcome", positions)

    def see(self, data_type: str, registration_ids: pd.Series | np.ndarray) -> None:
        """Note records the source holds that are not planned (rejected by validation)."""
        if len(registration_ids):
            self.positions(data_type, registration_ids)

    def unseen(self, data_types: Iterable[str]) -> pd.DataFrame:
        """Ledger records of ``data_types`` the run did not see in the source, in ledger order."""
        parts = []
        for data_type in data_types:
            rows = self._rows.get(data_type)
            if rows is not None:
                parts.append(rows[~self._seen[data_type]])
        rows = np.concatenate(parts) if parts else np.array([], dtype=np.int64)
        return self.state.iloc[np.sort(rows)].reset_index(drop=True)

    def returned(self, data_type: str) -> list[str]:
        """Registration ids of records marked vanished that this run saw in the source again."""
        rows = self._rows.get(data_type)
        if rows is None:
            return []
        gone = self.state["vanished_run_id"].iloc[rows].notna().to_numpy()
        return [
            str(rid) for rid in self._take("registration_id", rows[self._seen[data_type] & gone])
        ]

    def vanished(self, data_types: Iterable[str]) -> pd.DataFrame:
        """Records of ``data_types`` that Grip holds but that the run did not see in the source."""
        unseen = self.unseen(data_types)
        return unseen[accepted_mask(unseen)].reset_index(drop=True)


def accepted_mask(state: pd.DataFrame) -> np.ndarray:
    """Whether Grip holds an accepted payload of each record of a ledger state frame."""
    if "accepted_hash" in state:
        return state["accepted_hash"].notna().to_numpy(dtype=bool)
    return state["accepted"].to_numpy(dtype=bool)


def _text(column: pd.Series) -> np.ndarray:
    return column.astype(object).where(column.notna(), None).to_numpy(dtype=object)


def classify_against(
    positions: np.ndarray,
    hashes: np.ndarray,
    accepted: np.ndarray,
    sent: np.ndarray,
    outcome: np.ndarray,
) -> np.ndarray:
    """Classify records from their ledger positions (-1: unknown) and whole ledger columns."""
    known = positions >= 0
    safe = np.where(known, positions, 0)
    if len(accepted) == 0:
        return np.full(len(positions), Action.NEW.value, dtype=object)
    return decide(
        known,
        hashes,
        _pick(known, accepted, safe),
        _pick(known, sent, safe),
        _pick(known, outcome, safe),
    )


def decide(
    known: np.ndarray,
    hashes: np.ndarray,
    accepted: np.ndarray,
    sent: np.ndarray,
    outcome: np.ndarray,
) -> np.ndarray:
    """Classify records from the ledger's values for each (None where the ledger has none).

    The rules, first match wins:

    1. unknown to the ledger, or never accepted and never sent: ``new``;
    2. the last push failed: ``retry``;
    3. Grip holds exactly this content: ``unchanged``;
    4. Grip rejected exactly this content last time: ``held``;
    5. never accepted but refused in another form: ``changed`` (new content, worth a try);
    6. otherwise the content differs from what Grip accepted: ``changed``.
    """
    hashes = np.asarray(hashes, dtype=object)
    never_accepted = pd.isna(accepted)
    never_sent = pd.isna(sent)
    same_accepted = ~never_accepted & (accepted == hashes)
    same_sent = ~never_sent & (sent == hashes)
    conditions = [
        ~known | (never_accepted & never_sent),
        outcome == "failed",
        same_accepted,
        (outcome == "rejected") & same_sent,
    ]
    choices = [Action.NEW.value, Action.RETRY.value, Action.UNCHANGED.value, Action.HELD.value]
    return np.select(conditions, choices, default=Action.CHANGED.value).astype(object)


def _pick(known: np.ndarray, column: np.ndarray, safe: np.ndarray) -> np.ndarray:
    values = column[safe].astype(object)
    values[~known] = None
    return values


def to_push(actions: np.ndarray, stage: str) -> np.ndarray:
    """Return the mask of records a ``full`` or ``sync`` stage sends, given their actions."""
    wanted = PUSHED_BY_FULL if stage == "full" else PUSHED_BY_SYNC
    return np.isin(actions, [a.value for a in wanted])


def find_duplicates(keys: pd.DataFrame) -> pd.DataFrame:
    """Return every row whose ``registration_id`` occurs more than once in a run.

    Grip keys a profile by registration_id within the application, so the same id twice, in
    one data type or across two, would overwrite one record with the other. Every copy is
    rejected; none is pushed.

    Args:
        keys: columns ``data_type``, ``registration_id``, ``source_row``.

    Returns:
        The duplicate rows with a ``reason`` column naming the other places the id occurs.
    """
    if keys.empty:
        return keys.assign(reason=pd.Series(dtype=object))
    ids = keys["registration_id"].astype(object)
    dup = ids.duplicated(keep=False).to_numpy()
    found = keys.loc[dup].copy()
    if found.empty:
        return found.assign(reason=pd.Series(dtype=object))
    places: dict[str, list[str]] = {}
    for row in found.itertuples(index=False):
        places.setdefault(str(row.registration_id), []).append(
            f"{row.data_type} row {row.source_row}"
        )
    found["reason"] = [
        "registration_id {!r} occurs {} times in the source ({}); Grip would keep only one: "
        "make it unique".format(rid, len(places[str(rid)]), ", ".join(places[str(rid)][:5]))
        for rid in found["registration_id"].astype(object)
    ]
    return found.reset_index(drop=True)


@dataclass
class PlanCounts:
    """How many records the plan put in each :class:`Action`, plus the vanished ones."""

    new: int = 0
    changed: int = 0
    unchanged: int = 0
    retry: int = 0
    held: int = 0
    vanished: int = 0

    def add(self, actions: np.ndarray) -> None:
        values, counts = np.unique(np.asarray(actions, dtype=str), return_counts=True)
        for value, count in zip(values, counts, strict=True):
            setattr(self, str(value), getattr(self, str(value)) + int(count))

    def remove(self, actions: Iterable[str]) -> None:
        for value in actions:
            setattr(self, value, getattr(self, value) - 1)

    @property
    def total(self) -> int:
        return self.new + self.changed + self.unchanged + self.retry + self.held

    def as_dict(self) -> dict[str, int]:
        return {
            "new": self.new,
            "changed": self.changed,
            "unchanged": self.unchanged,
            "retry": self.retry,
            "held": self.held,
            "vanished": self.vanished,
        }


@dataclass(frozen=True)
class FieldChange:
    """One field of a changed record: what Grip holds and what the run would send."""

    data_type: str
    registration_id: str
    field: str
    old: Any
    new: Any

    def as_dict(self) -> dict[str, Any]:
        return {
            "data_type": self.data_type,
            "registration_id": self.registration_id,
            "field": self.field,
            "old": self.old,
            "new": self.new,
        }


@dataclass
class ExampleKeeper:
    """Keeps the first few changed records of a run, to show their differences field by field."""

    limit: int = 5
    items: list[tuple[str, str, str]] = field(default_factory=list)

    def offer(
        self, data_type: str, ids: np.ndarray, payloads: np.ndarray, actions: np.ndarray
    ) -> None:
        if len(self.items) >= self.limit:
            return
        for i in np.flatnonzero(actions == Action.CHANGED.value)[: self.limit - len(self.items)]:
            self.items.append((data_type, str(ids[i]), str(payloads[i])))

    def changes(self, old: Mapping[tuple[str, str], str]) -> list[FieldChange]:
        """Compare the kept records with the payloads Grip accepted (``old``, by key)."""
        out: list[FieldChange] = []
        for data_type, registration_id, new_text in self.items:
            before = old.get((data_type, registration_id))
            if before is None:
                continue
            out.extend(
                FieldChange(data_type, registration_id, name, was, now)
                for name, was, now in diff_payloads(json.loads(before), json.loads(new_text))
            )
        return out


def diff_payloads(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[tuple[str, Any, Any]]:
    """Return ``(field, old, new)`` for each field that differs, ``metadata_raw`` key by key."""
    out = []
    for name in sorted(set(old) | set(new)):
        was, now = old.get(name), new.get(name)
        if was == now:
            continue
        if name == "metadata_raw" and isinstance(was, Mapping) and isinstance(now, Mapping):
            for key in sorted(set(was) | set(now)):
                if was.get(key) != now.get(key):
                    out.append((f"metadata_raw.{key}", was.get(key), now.get(key)))
        else:
            out.append((name, was, now))
    return out
