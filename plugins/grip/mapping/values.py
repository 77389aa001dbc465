"""A chunk's text column kept as distinct values plus indices when it repeats itself.

Registration exports repeat a few values per column (cities, job titles, categories, status),
so transforms and JSON escaping run once per distinct value and one ``take`` spreads them to
the rows. Columns of mostly distinct values (ids, e-mail addresses) stay row by row.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from grip.mapping.transforms import TEXT, Flag, Text

_SAMPLE = 2048
_MAX_DISTINCT_SHARE = 0.3


class Values:
    """Text of a chunk's rows: either ``rows`` itself, or ``dictionary`` taken by ``indices``.

    Transforms run on :attr:`target` (the dictionary when there is one, else the rows) and
    give back a new Values with :meth:`replace`, so both forms share one code path.
    """

    __slots__ = ("_rows", "dictionary", "indices")

    def __init__(
        self, *, rows: Text | None = None, dictionary: Text | None = None, indices=None
    ) -> None:
        self._rows = rows
        self.dictionary = dictionary
        self.indices: np.ndarray | None = indices

    @classmethod
    def of(cls, text: Text) -> Values:
        """Choose the form: distinct values when a sample of the rows repeats itself enough."""
        count = len(text)
        if count >= 64:
            sample = text.slice(0, min(count, _SAMPLE))
            if pc.count_distinct(sample, mode="all").as_py() <= len(sample) * _MAX_DISTINCT_SHARE:
                return cls.encoded(text)
        return cls(rows=text)

    @classmethod
    def encoded(cls, text: Text) -> Values:
        """Distinct values and indices (nulls get an entry of their own)."""
        encoded = pc.dictionary_encode(text.combine_chunks(), null_encoding="encode")
        indices = np.asarray(encoded.indices.to_numpy(zero_copy_only=False), dtype=np.int64)
        return cls(dictionary=pa.chunked_array([encoded.dictionary], type=TEXT), indices=indices)

    @classmethod
    def constant(cls, value: str | None, count: int) -> Values:
        """The same value in every row."""
        dictionary = pa.chunked_array([pa.array([value], type=TEXT)], type=TEXT)
        return cls(dictionary=dictionary, indices=np.zeros(count, dtype=np.int64))

    def __len__(self) -> int:
        return len(self.indices) if self.indices is not None else len(self._rows or [])

    @property
    def target(self) -> Text:
        """What transforms run on: the distinct values, or the rows."""
        return self.dictionary if self.dictionary is not None else self._require_rows()

    def replace(self, target: Text) -> Values:
        """The same rows with transformed target values."""
        if self.dictionary is None:
            return Values(rows=target)
        return Values(dictionary=target, indices=self.indices)

    def map(self, function: Callable[[Text], Text]) -> Values:
        """Apply a vectorised function to the target values."""
        return self.replace(function(self.target))

    def rows(self) -> Text:
        """The value of every row (taken from the distinct values once, then kept)."""
        if self._rows is None:
            assert self.dictionary is not None
            assert self.indices is not None
            self._rows = pc.take(self.dictionary, pa.array(self.indices))
        return self._rows

    def _require_rows(self) -> Text:
        assert self._rows is not None
        return self._rows

    def spread(self, per_target: np.ndarray) -> np.ndarray:
        """Spread a numpy array computed per target value to the rows."""
        return per_target if self.indices is None else per_target[self.indices]

    def filter(self, keep: np.ndarray) -> Values:
        """Keep the rows where ``keep`` is true."""
        if self.indices is not None:
            return Values(dictionary=self.dictionary, indices=self.indices[keep])
        return Values(rows=self._require_rows().filter(pa.array(keep)))

    def row_flag(self, flag: Flag) -> Flag:
        """Turn a flag raised on the target values into one on the rows."""
        if self.indices is None:
            return flag
        value_of = dict(zip(flag.positions.tolist(), flag.values, strict=True))
        rows = np.flatnonzero(np.isin(self.indices, flag.positions))
        values = [value_of[index] for index in self.indices[rows].tolist()]
        return Flag(flag.rule, rows, values, flag.message)
