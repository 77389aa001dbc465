"""Build JSON text in column form: one pyarrow operation per field instead of one dict per row.

The text equals ``grip.payload.canonical_json`` of the same payload: keys sorted, no spaces,
non-ASCII kept as is, and strings escaped as ``json.dumps(..., ensure_ascii=False)`` does.
"""

from __future__ import annotations

import functools
import json
from typing import Any, TypeAlias

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from grip.mapping.transforms import TEXT, Text, chunked, lit

_encode_string = json.encoder.encode_basestring
_QUOTE, _BACKSLASH, _FIRST_PRINTABLE = 0x22, 0x5C, 0x20

Part: TypeAlias = Text | pa.Scalar


def constant(value: Any) -> str:
    """JSON text of a constant, as canonical_json writes it."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def json_strings(values: Text) -> Text:
    """Quote and escape each value as a JSON string; nulls stay null."""
    return json_member(None, values)


def json_member(key: str | None, values: Text) -> Text:
    """``"key":"value"`` (or just ``"value"`` without a key), escaped; nulls stay null."""
    prefix = (constant(key) + ":" if key is not None else "") + '"'
    quoted = pc.binary_join_element_wise(lit(prefix), values, lit('"'), lit(""))
    rows = _rows_to_escape(values)
    if not len(rows):
        return chunked(quoted)
    raw = pc.take(values, pa.array(rows)).to_pylist()
    escaped = pa.array([prefix[:-1] + _encode_string(text) for text in raw], type=TEXT)
    mask = np.zeros(len(values), dtype=bool)
    mask[rows] = True
    combined = quoted.combine_chunks() if isinstance(quoted, pa.ChunkedArray) else quoted
    return chunked(pc.replace_with_mask(combined, pa.array(mask), escaped))


def _rows_to_escape(values: Text) -> np.ndarray:
    """Rows holding a quote, a backslash or a control character, found in the UTF-8 bytes.

    Bytes below 0x80 are whole ASCII characters in UTF-8, so a byte test is exact.
    """
    found = []
    start_row = 0
    for chunk in values.chunks if isinstance(values, pa.ChunkedArray) else [values]:
        size = len(chunk)
        _, offsets_buffer, data_buffer = chunk.buffers()
        if size and data_buffer is not None:
            offsets = np.frombuffer(offsets_buffer, dtype=np.int64)[
                chunk.offset : chunk.offset + size + 1
            ]
            data = np.frombuffer(data_buffer, dtype=np.uint8)[offsets[0] : offsets[-1]]
            hits = np.flatnonzero(
                (data < _FIRST_PRINTABLE) | (data == _QUOTE) | (data == _BACKSLASH)
            )
            if len(hits):
                rows = np.searchsorted(offsets, hits + offsets[0], side="right") - 1
                found.append(np.unique(rows) + start_row)
        start_row += size
    return np.concatenate(found) if found else np.zeros(0, dtype=np.int64)


def wrap(start: str, values: Text, end: str) -> Text:
    """``start + value + end`` where there is a value; null stays null."""
    return chunked(pc.binary_join_element_wise(lit(start), values, lit(end), lit("")))


def obj(members: list[Part], start: str = "{", end: str = "}") -> Text:
    """Join members with commas, leaving nulls out, between ``start`` and ``end``.

    A row without any member gets null. Object members must come in sorted key order;
    ``start="["`` and ``end="]"`` build a list instead, and a longer ``start`` (such as
    ``'"metadata_raw":{'``) makes the object a member of an enclosing one in the same pass.
    """
    parts = list(members)
    always = any(isinstance(part, pa.Scalar) and part.is_valid for part in parts)
    if not always:
        # NOTE: pyarrow (26) drops the rows whose parts are all null when nulls are skipped, so
        # such rows get an empty text part; it joins no comma since every other part is null.
        all_null = functools.reduce(pc.and_, [pc.is_null(part) for part in parts])
        parts.append(pc.if_else(all_null, lit(""), pa.scalar(None, TEXT)))
    inner = pc.binary_join_element_wise(*parts, lit(","), null_handling="skip")
    if not always:
        inner = null_if(inner, "")
    return wrap(start, chunked(inner), end)


def null_if(values: Text, empty_text: str) -> Text:
    """Null where the text equals ``empty_text`` (for example an object with no members)."""
    return pc.if_else(pc.equal(values, lit(empty_text)), pa.scalar(None, TEXT), values)
