"""Vectorised text transforms over pyarrow string arrays; nulls stand for empty values."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeAlias

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from grip.mapping.spec import DateArgs, MapArgs, PhoneArgs, ReplaceArgs, Step

TEXT = pa.large_string()
Text: TypeAlias = pa.ChunkedArray
"""A column of text: a chunked large_string array whose nulls are empty values."""


def lit(value: str) -> pa.Scalar:
    """A large_string scalar, for joining with text columns."""
    return pa.scalar(value, TEXT)


@dataclass(frozen=True)
class Flag:
    """Rows a transform could not handle: their positions, input values and what went wrong.

    ``message`` is formatted with ``value`` (the input text, quoted by the caller).
    """

    rule: str
    positions: np.ndarray
    values: list[Any]
    message: str


Result = tuple[Text, Flag | None]


def to_text(series: pd.Series) -> Text:
    """Turn any source column into text: integers without '.0', dates in ISO form, NA as null."""
    dtype = series.dtype
    if isinstance(dtype, pd.StringDtype) and dtype.storage == "pyarrow":
        data = series.array._pa_array
        return chunked(data.cast(TEXT) if data.type != TEXT else data)
    if pd.api.types.is_bool_dtype(dtype):
        values = series.astype("boolean")
        mapped = values.map({True: "true", False: "false"}, na_action="ignore")
        return chunked(pa.array(mapped.to_numpy(dtype=object), type=TEXT, from_pandas=True))
    if pd.api.types.is_float_dtype(dtype):
        floats = pd.to_numeric(series, errors="coerce").astype("Float64")
        finite = floats.dropna()
        if len(finite) and bool((finite == finite.round()).all()) and finite.abs().max() < 2**53:
            return chunked(pa.array(floats.astype("Int64"), from_pandas=True).cast(TEXT))
        return chunked(pa.array(floats, from_pandas=True).cast(TEXT))
    if pd.api.types.is_datetime64_any_dtype(dtype):
        return chunked(_timestamps_text(pa.array(series, from_pandas=True)))
    try:
        array = pa.array(series, from_pandas=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        texts = series.map(str, na_action="ignore").to_numpy(dtype=object)
        array = pa.array(texts, type=TEXT, from_pandas=True)
    if pa.types.is_timestamp(array.type):
        array = _timestamps_text(array)
    return chunked(array.cast(TEXT))


def _timestamps_text(stamps: pa.Array) -> pa.Array:
    seconds = stamps.cast(pa.timestamp("s", tz=stamps.type.tz), safe=False)
    return pc.strftime(seconds, format="%Y-%m-%d %H:%M:%S").cast(TEXT)


def chunked(array: pa.Array | pa.ChunkedArray) -> Text:
    """The array as a chunked array (the form every function here returns)."""
    if isinstance(array, pa.ChunkedArray):
        return array
    return pa.chunked_array([array], type=array.type)


def nullify_empty(values: Text, *, blank_possible: bool = True) -> Text:
    """Turn empty and whitespace-only text into null (the engine's single meaning of 'empty').

    ``blank_possible=False`` says no value is whitespace only (they were trimmed), so only
    empty text needs looking for.
    """
    empty = pc.equal(pc.binary_length(values), 0)
    blank = pc.or_(empty, pc.utf8_is_space(values)) if blank_possible else empty
    return pc.if_else(blank, pa.scalar(None, TEXT), values)


# transforms after which no value is whitespace only
_TRIMMING = {"trim", "email", "phone", "date"}


def is_present(values: Text) -> np.ndarray:
    """Boolean numpy mask of the non-null rows."""
    return np.asarray(pc.is_valid(values).to_numpy(zero_copy_only=False), dtype=bool)


def apply_chain(
    values: Text, steps: list[Step], *, blank_possible: bool = True
) -> tuple[Text, list[Flag]]:
    """Apply transforms in order; return the result (empty as null) and the rows each flagged.

    ``blank_possible=False`` says the input has no whitespace-only values.
    """
    flags: list[Flag] = []
    for step in steps:
        kind = step.kind
        values, flag = TRANSFORM_FUNCTIONS[kind](values, getattr(step, kind))
        if flag is not None:
            flags.append(flag)
        blank_possible = kind not in _TRIMMING and (blank_possible or kind in ("map", "replace"))
    return nullify_empty(values, blank_possible=blank_possible), flags


def apply_simple(values: Text, names: tuple[str, ...]) -> Text:
    """Apply transforms that take no settings (the ones templates may name)."""
    for name in names:
        values, _ = TRANSFORM_FUNCTIONS[name](values, None)
    return values


def _trim(values: Text, _: Any) -> Result:
    return pc.utf8_trim_whitespace(values), None


def _collapse_spaces(values: Text, _: Any) -> Result:
    return pc.replace_substring_regex(values, pattern=r"\s+", replacement=" "), None


def _lower(values: Text, _: Any) -> Result:
    return pc.utf8_lower(values), None


def _upper(values: Text, _: Any) -> Result:
    return pc.utf8_upper(values), None


def _title(values: Text, _: Any) -> Result:
    return pc.utf8_title(values), None


def _email(values: Text, _: Any) -> Result:
    cleaned = pc.utf8_trim_whitespace(values)
    cleaned = pc.replace_substring_regex(cleaned, pattern=r"(?i)^mailto:", replacement="")
    cleaned = pc.replace_substring_regex(cleaned, pattern=r"^<(.*)>$", replacement=r"\1")
    return pc.utf8_lower(pc.utf8_trim_whitespace(cleaned)), None


def _phone(values: Text, args: PhoneArgs | None) -> Result:
    trimmed = pc.utf8_trim_whitespace(values)
    international = pc.match_substring_regex(trimmed, pattern=r"^(\+|00)")
    digits = pc.replace_substring_regex(trimmed, pattern=r"[^0-9]", replacement="")
    digits = pc.if_else(
        pc.starts_with(trimmed, "00"),
        pc.replace_substring_regex(digits, pattern="^00", replacement=""),
        digits,
    )
    plus = pc.binary_join_element_wise(lit("+"), digits, lit(""))
    national = digits
    if args is not None and args.country_code:
        code = args.country_code.lstrip("+")
        without_zero = pc.replace_substring_regex(digits, pattern="^0", replacement="")
        national = pc.binary_join_element_wise(lit("+" + code), without_zero, lit(""))
    cleaned = pc.if_else(international, plus, national)
    no_digits = pc.equal(pc.utf8_length(digits), 0)
    return pc.if_else(no_digits, pa.scalar(None, TEXT), cleaned), None


def _date(values: Text, args: DateArgs) -> Result:
    trimmed = nullify_empty(pc.utf8_trim_whitespace(values))
    parsed: pa.ChunkedArray | None = None
    for fmt in args.from_:
        attempt = _strict_dates(trimmed, fmt)
        parsed = attempt if parsed is None else pc.coalesce(parsed, attempt)
    assert parsed is not None  # DateArgs.from_ has at least one format
    result = pc.strftime(parsed, format=args.to).cast(TEXT)
    failed = pc.and_(pc.is_valid(trimmed), pc.is_null(parsed))
    formats = " or ".join(args.from_)
    return result, _flag("date_format", failed, trimmed, f"{{value}} does not match {formats}")


def _strict_dates(texts: Text, fmt: str) -> Any:
    """Parse dates with pyarrow, refusing days a month lacks (31.02 or 29.02 of a common year).

    pyarrow rolls such days over into the next month (31.02.2026 becomes 2026-03-03), so a
    parse that lands on the first days of a month and does not give back the input text is
    checked again with Python's strptime, which refuses them.
    """
    parsed = pc.strptime(texts, format=fmt, unit="s", error_is_null=True)
    suspicious = pc.fill_null(pc.less_equal(pc.day(parsed), 3), False)
    suspicious = pc.and_(
        suspicious, pc.not_equal(pc.strftime(parsed, format=fmt).cast(TEXT), texts)
    )
    mask = np.asarray(suspicious.to_numpy(zero_copy_only=False), dtype=bool)
    if not mask.any():
        return parsed
    positions = np.flatnonzero(mask)
    refused = np.zeros(len(mask), dtype=bool)
    for position, text in zip(
        positions, pc.take(texts, pa.array(positions)).to_pylist(), strict=True
    ):
        try:
            datetime.strptime(text, fmt)
        except ValueError:
            refused[position] = True
    if not refused.any():
        return parsed
    return pc.if_else(pa.array(refused), pa.scalar(None, parsed.type), parsed)


def _map(values: Text, args: MapArgs) -> Result:
    keys = list(args.values)
    labels = pa.array(list(args.values.values()), type=TEXT)
    probe = pc.utf8_trim_whitespace(values)
    if args.ignore_case:
        probe = pc.utf8_lower(probe)
        keys = [key.strip().lower() for key in keys]
    index = pc.index_in(probe, value_set=pa.array(keys, type=TEXT))
    mapped = pc.take(labels, index)
    unknown = pc.and_(pc.is_valid(nullify_empty(probe)), pc.is_null(index))
    if args.otherwise == "keep":
        return pc.if_else(unknown, values, mapped), None
    if args.otherwise == "empty":
        return mapped, None
    shown = ", ".join(list(args.values)[:8]) + (", ..." if len(args.values) > 8 else "")
    return mapped, _flag(
        "value_map", unknown, values, f"{{value}} is not a code of the map ({shown})"
    )


def _replace(values: Text, args: ReplaceArgs) -> Result:
    replacement = args.with_
    return pc.replace_substring_regex(values, pattern=args.pattern, replacement=replacement), None


def _flag(rule: str, failed: Any, inputs: Text, message: str) -> Flag | None:
    mask = np.asarray(pc.fill_null(failed, False).to_numpy(zero_copy_only=False), dtype=bool)
    positions = np.flatnonzero(mask)
    if not len(positions):
        return None
    values = pc.take(inputs, pa.array(positions)).to_pylist()
    return Flag(rule, positions, values, message)


TRANSFORM_FUNCTIONS: dict[str, Callable[[Text, Any], Result]] = {
    "trim": _trim,
    "collapse_spaces": _collapse_spaces,
    "lower": _lower,
    "upper": _upper,
    "title": _title,
    "email": _email,
    "phone": _phone,
    "date": _date,
    "map": _map,
    "replace": _replace,
}


def check_regex(pattern: str, replacement: str | None = None) -> str | None:
    """Return why ``pattern`` (and a replacement's group references) is not valid RE2, or None."""
    probe = pa.array(["x"], type=TEXT)
    try:
        if replacement is None:
            pc.match_substring_regex(probe, pattern=pattern)
        else:
            pc.replace_substring_regex(probe, pattern=pattern, replacement=replacement)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as err:
        return str(err).splitlines()[0]
    return None
