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

from grip.mapping.transforms import TEXT, Text, lit

# json.dumps(ensure_ascii=False) escapes exactly these: the quote, the backslash, control chars
_NEEDS_ESCAPE = r'[\x00-\x1f"\\]'
_encode_string = json.encoder.encode_basestring

Part: TypeAlias = Text | pa.Scalar


def constant(value: Any) -> str:
    """JSON text of a constant, as canonical_json writes it."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def json_strings(values: Text) -> Text:
    """Quote and escape each value as a JSON string; nulls stay null."""
    quoted = wrap('"', values, '"')
    needs = pc.fill_null(pc.match_substring_regex(values, pattern=_NEEDS_ESCAPE), False)
    if not pc.any(needs).as_py():
        return quoted
    mask = np.asarray(needs.to_numpy(zero_copy_only=False), dtype=bool)
    raw = pc.take(values, pa.array(np.flatnonzero(mask))).to_pylist()
    escaped = pa.array([_encode_string(text) for text in raw], type=TEXT)
    return _chunked(pc.replace_with_mask(quoted.combine_chunks(), pa.array(mask), escaped))


def wrap(start: str, values: Text, end: str) -> Text:
    """``start + value + end`` where there is a value; null stays null."""
    return _chunked(pc.binary_join_element_wise(lit(start), values, lit(end), lit("")))


def member(key: str, value_json: Text) -> Text:
    """``"key":<value>`` for each row with a value, null otherwise."""
    return wrap(constant(key) + ":", value_json, "")


def obj(members: list[Part], brackets: str = "{}") -> Text:
    """Join members (nulls left out) with commas into a JSON object, or a list with ``"[]"``.

    Object members must come in sorted key order.
    """
    parts = list(members)
    if not any(isinstance(part, pa.Scalar) and part.is_valid for part in parts):
        # NOTE: pyarrow (26) drops the rows whose parts are all null when nulls are skipped, so
        # such rows get an empty text part; it joins no comma since every other part is null.
        all_null = functools.reduce(pc.and_, [pc.is_null(part) for part in parts])
        parts.append(pc.if_else(all_null, lit(""), pa.scalar(None, TEXT)))
    inner = pc.binary_join_element_wise(*parts, lit(","), null_handling="skip")
    return wrap(brackets[0], _chunked(inner), brackets[1])


def null_if(values: Text, empty_text: str) -> Text:
    """Null where the text equals ``empty_text`` (for example an object with no members)."""
    return pc.if_else(pc.equal(values, lit(empty_text)), pa.scalar(None, TEXT), values)


def _chunked(array: pa.Array | pa.ChunkedArray) -> Text:
    return array if isinstance(array, pa.ChunkedArray) else pa.chunked_array([array], type=TEXT)
