"""Hashes of raw source rows, so that a sync can skip the rows it mapped before unchanged."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from pandas.util import hash_array

_NULL = pa.scalar(b"\x00", pa.large_binary())
_SEPARATOR = pa.scalar(b"\x1f", pa.large_binary())


def row_hashes(frame: pd.DataFrame, columns: Sequence[str], seed: str) -> np.ndarray:
    """Return a 64-bit hash of each row's ``columns``, keyed by ``seed``, as int64.

    The seed is the mapping's fingerprint: the same row under another mapping gets another
    hash, so nothing mapped by an older mapping is ever taken for current. Values are hashed as
    their text; a null differs from an empty text.

    NOTE: 64 bits: two different rows of one data type share a hash with a chance of about
    n^2 / 2^65 (1e-8 for a million rows); a full run re-maps every row whatever the hash says.
    """
    return hash_joined(join_columns(frame, columns), seed)


def join_columns(frame: pd.DataFrame, columns: Sequence[str]) -> pa.Array:
    """The first half of :func:`row_hashes`: each row's columns as one byte string.

    Arrow does this without holding the interpreter, so it can run in a reading thread.
    """
    if not len(frame):
        return pa.array([], type=pa.large_binary())
    parts = [_as_binary(frame[name]) for name in sorted(columns)]
    if len(parts) > 1:
        return pc.binary_join_element_wise(
            *parts, _SEPARATOR, null_handling="replace", null_replacement=_NULL.as_py()
        )
    return pc.fill_null(parts[0], _NULL)


def hash_joined(joined: pa.Array, seed: str) -> np.ndarray:
    """The second half of :func:`row_hashes`: a keyed 64-bit hash of each joined row.

    SipHash-2-4 over each row's bytes, keyed by a digest of the seed, computed in C by pandas'
    hashing of object arrays: about six times faster than a Python loop over hashlib.
    """
    if not len(joined):
        return np.empty(0, dtype=np.int64)
    key = hashlib.blake2b(seed.encode("utf-8"), digest_size=8).hexdigest()  # 16 characters
    values = joined.to_numpy(zero_copy_only=False)
    return hash_array(values, hash_key=key, categorize=False).view(np.int64)


def source_seed(mapping: Any, application: Any) -> str:
    """What a source row's hash is keyed by: everything that shapes its payload.

    The mapping (with its translation tables), the application's languages, type ids and
    containers, and the version of grip-sync (whose code turns rows into payloads).
    """
    import grip

    return "|".join((mapping.fingerprint, application.model_dump_json(), grip.__version__))


def _as_binary(column: pd.Series) -> pa.Array:
    """A column's values as their text, in bytes (nulls stay null)."""
    values = column.array
    if isinstance(values, pd.arrays.ArrowExtensionArray):
        array = values.__arrow_array__()
    else:
        array = pa.array(column.to_numpy(dtype=object), from_pandas=True)
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    if pa.types.is_large_binary(array.type):
        return array
    if not pa.types.is_large_string(array.type):
        array = pc.cast(array, pa.large_string())
    # NOTE: a large string and a large binary share their layout: a view copies nothing
    return array.view(pa.large_binary())
