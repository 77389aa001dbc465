"""The transform engine: a chunk of source rows in, Grip payloads (as canonical JSON) out."""

from __future__ import annotations

import itertools
import json
import logging
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from grip.errors import MappingError
from grip.mapping import jsoncol
from grip.mapping.jsoncol import constant, json_member, json_strings, obj, wrap
from grip.mapping.loader import MappingSpec
from grip.mapping.spec import FieldSpec, FilterSpec, MetadataSpec, Step
from grip.mapping.template import Template
from grip.mapping.transforms import (
    TEXT,
    Flag,
    Text,
    apply_chain,
    apply_simple,
    is_present,
    lit,
    nullify_empty,
    to_text,
)
from grip.mapping.values import Values

logger = logging.getLogger(__name__)

LANGUAGES_COLUMN = "_languages"
"""Validation column: the languages a row's ``metadata_raw`` uses, sorted, comma-separated."""

METADATA_PREFIX = "metadata."
"""Validation columns ``metadata.<key>`` hold a required metadata key's JSON member text
(``"key":[...]``), null when the key has no value."""


class MappedChunk:
    """Payloads of one chunk of source rows, in source order.

    Attributes:
        data_type: The mapping's data type.
        rows: One row per payload, indexed by the 1-based source row number, with
            ``registration_id``, ``payload_json`` (exactly ``canonical_json(payload)``), the
            mapped Grip fields, ``type_id``, ``_languages`` and ``metadata.<key>`` for required
            metadata keys.
        filtered: Rows left out by each filter (a row matching several counts under the first).
        filtered_rows: The source row numbers each filter left out, in the same way.
        problems: Source row -> what the mapping could not do for it (an unknown code, a date in
            another format, ...); validation turns these into rejects.
    """

    def __init__(
        self,
        data_type: str,
        rows: pd.DataFrame,
        filtered: dict[str, int],
        problems: dict[int, list[str]],
        filtered_rows: dict[str, np.ndarray] | None = None,
    ):
        self.data_type = data_type
        self.rows = rows
        self.filtered = filtered
        self.problems = problems
        self.filtered_rows = filtered_rows or {}

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def read(self) -> int:
        """Source rows this chunk was made from (payloads plus filtered rows)."""
        return len(self.rows) + sum(self.filtered.values())

    def payloads(self, source_rows: Iterable[int] | None = None) -> Iterator[dict[str, Any]]:
        """Yield payload dicts for all rows, or for the given source row numbers in that order."""
        texts = self.rows["payload_json"]
        if source_rows is not None:
            texts = texts.loc[list(source_rows)]
        for text in texts:
            yield json.loads(text)

    def select(self, mask: np.ndarray | pd.Series) -> MappedChunk:
        """A chunk with the rows where ``mask`` is true (filter counts stay with the original)."""
        keep = np.asarray(mask, dtype=bool)
        rows = self.rows if keep.all() else self.rows[keep]
        kept = set(rows.index)
        problems = {row: reasons for row, reasons in self.problems.items() if row in kept}
        return MappedChunk(self.data_type, rows, dict.fromkeys(self.filtered, 0), problems)

    def __repr__(self) -> str:
        return f"MappedChunk({self.data_type}, {len(self)} rows, filtered={self.filtered})"


class _Problems:
    """Collects row problems by position within the chunk's kept rows."""

    def __init__(self) -> None:
        self.by_position: dict[int, list[str]] = {}

    def add_flag(self, flag: Flag, target: str) -> None:
        _add_reasons(self.by_position, flag.positions, flag, target)

    def add(self, positions: Iterable[int], reasons: Iterable[list[str]]) -> None:
        for position, found in zip(positions, reasons, strict=True):
            self.by_position.setdefault(position, []).extend(found)


class Mapper:
    """Applies one mapping to chunks of source rows, vectorised over each chunk.

    Args:
        spec: A loaded mapping.
    """

    def __init__(self, spec: MappingSpec):
        self.spec = spec
        self.model = spec.model
        self._languages = spec.output_languages
        self._bits = {lang: 1 << index for index, lang in enumerate(self._languages)}
        names = [_language_list(self._languages, bits) for bits in range(1 << len(self._languages))]
        self._language_names = pa.array([None, *names[1:]], type=TEXT)
        self._tables = {key: _Table(spec, key, self._bits) for key in spec.tables}

    def map(self, frame: pd.DataFrame) -> MappedChunk:
        """Map a chunk whose index holds the 1-based source row numbers.

        Raises:
            MappingError: The chunk lacks columns the mapping reads.
        """
        missing = sorted(self.spec.required_columns - set(frame.columns))
        if missing:
            raise MappingError(
                f"{self.spec.path}: the source lacks column(s) {', '.join(missing)} that the "
                f"{self.spec.data_type} mapping reads; it has: {', '.join(map(str, frame.columns))}"
            )
        source_rows = np.asarray(frame.index, dtype=np.int64)
        text = {
            column: Values.of(to_text(frame[column]))
            for column in sorted(self.spec.required_columns)
        }

        keep, hits = self._filter(text, len(frame))
        filtered = {name: int(hit.sum()) for name, hit in hits.items()}
        filtered_rows = {name: source_rows[hit] for name, hit in hits.items() if hit.any()}
        if keep is not None:
            text = {column: values.filter(keep) for column, values in text.items()}
            source_rows = source_rows[keep]
        count = len(source_rows)
        problems = _Problems()

        key = self._key(text)
        fields = self._fields(text, count, problems)
        metadata, language_bits, required_meta = self._metadata(text, count, problems)
        payload = self._payload(key, fields, metadata)

        columns: dict[str, Any] = {
            "registration_id": _series(key),
            "payload_json": _series(payload),
        }
        for name in self.spec.checked_fields:
            columns[name] = _series(fields[name].rows())
        columns["type_id"] = np.full(count, self.model.type_id, dtype=np.int64)
        languages = pc.take(self._language_names, pa.array(language_bits))
        columns[LANGUAGES_COLUMN] = _series(languages)
        for name, fragment in required_meta.items():
            columns[METADATA_PREFIX + name] = _series(fragment)
        rows = pd.DataFrame(columns, index=pd.Index(source_rows, name="source_row"))
        row_problems = {
            int(source_rows[position]): reasons
            for position, reasons in sorted(problems.by_position.items())
        }
        logger.debug(
            "Mapped %d %s rows (%d filtered, %d with problems)",
            count,
            self.spec.data_type,
            sum(filtered.values()),
            len(row_problems),
        )
        return MappedChunk(self.spec.data_type, rows, filtered, row_problems, filtered_rows)

    def _filter(
        self, text: dict[str, Values], count: int
    ) -> tuple[np.ndarray | None, dict[str, np.ndarray]]:
        """The mask of rows to keep (None: every row) and the rows each filter leaves out."""
        hits: dict[str, np.ndarray] = {}
        dropped = np.zeros(count, dtype=bool)
        for item in self.model.filters:
            values = text[item.column]
            hit = values.spread(_filter_mask(item, values.target)) & ~dropped
            hits[item.name] = hit
            dropped |= hit
        return (~dropped if dropped.any() else None), hits

    def _key(self, text: dict[str, Values]) -> Text:
        spec = self.model.key
        columns = [spec.column] if spec.column else list(spec.columns or [])
        parts = [
            text[column]
            .map(lambda t: nullify_empty(pc.utf8_trim_whitespace(t), blank_possible=False))
            .rows()
            for column in columns
        ]
        if len(parts) == 1:
            key = parts[0]
        else:
            key = pc.binary_join_element_wise(*parts, lit(spec.separator))  # null if a part is
        key, _ = apply_chain(key, spec.transforms, blank_possible=False)
        if spec.prefix:
            key = pc.binary_join_element_wise(lit(spec.prefix), key, lit(""))
        return key

    def _fields(
        self, text: dict[str, Values], count: int, problems: _Problems
    ) -> dict[str, Values]:
        fields: dict[str, Values] = {}
        for name in self.spec.field_order:
            field = self.model.fields[name]
            source = self._field_input(name, field, text, fields, count)
            # a rendered template is never blank: its placeholders were made null when blank
            clean = field.template is None
            result = self._chain(source, field.transforms, name, problems, blank_possible=clean)
            if field.default is not None:
                result = result.replace(pc.fill_null(result.target, lit(field.default)))
            fields[name] = result
        return fields

    def _field_input(
        self,
        name: str,
        field: FieldSpec,
        text: dict[str, Values],
        fields: dict[str, Values],
        count: int,
    ) -> Values:
        if field.column is not None:
            return text[field.column]
        if field.const is not None:
            return Values.constant(field.const, count)
        return Values(rows=_render(self.spec.templates[name], text, fields))

    def _chain(
        self,
        values: Values,
        steps: list[Step],
        target: str,
        problems: _Problems,
        blank_possible: bool = True,
    ) -> Values:
        result, flags = apply_chain(values.target, steps, blank_possible=blank_possible)
        for flag in flags:
            problems.add_flag(values.row_flag(flag), target)
        return values.replace(result)

    def _metadata(
        self, text: dict[str, Values], count: int, problems: _Problems
    ) -> tuple[Text | None, np.ndarray, dict[str, Text]]:
        bits = np.zeros(count, dtype=np.int64)
        members: list[jsoncol.Part] = []
        required: dict[str, Text] = {}
        for key in sorted(self.model.metadata):
            meta = self.model.metadata[key]
            # each value comes as its whole member, '"key":[...]', or null when it is empty
            fragment, key_bits = self._metadata_value(key, meta, text, count, problems)
            bits |= key_bits
            if meta.required:
                required[key] = fragment
            if self.model.send_empty:
                fragment = pc.fill_null(fragment, lit(_member_start(key) + "[]"))
            members.append(fragment)
        if not members:
            return None, bits, required
        return obj(members, _member_start("metadata_raw") + "{", "}"), bits, required

    def _metadata_value(
        self,
        key: str,
        meta: MetadataSpec,
        text: dict[str, Values],
        count: int,
        problems: _Problems,
    ) -> tuple[Text, np.ndarray]:
        target = f"metadata_raw.{key}"
        if meta.const is not None:
            lang = meta.language or self.spec.default_language
            fragment = Values.constant(
                _member_start(key) + constant([{lang: meta.const}]), count
            ).rows()
            return fragment, np.full(count, self._bits[lang], dtype=np.int64)
        if meta.languages is not None and meta.split is not None:
            return self._metadata_zipped(key, meta, text, problems)
        if meta.column is not None and (meta.split is not None or meta.translate is not None):
            return self._metadata_items(key, meta, text[meta.column], problems)

        bits = np.zeros(count, dtype=np.int64)
        if meta.languages is not None:
            parts = []
            for lang in sorted(meta.languages):
                values = self._chain(text[meta.languages[lang]], meta.transforms, target, problems)
                bits |= np.where(values.spread(is_present(values.target)), self._bits[lang], 0)
                parts.append(values.replace(json_member(lang, values.target)).rows())
            return obj(parts, _member_start(key) + "[{", "}]"), bits

        lang = meta.language or self.spec.default_language
        columns = [meta.column] if meta.column else list(meta.columns or [])
        items = []
        start = "{" + constant(lang) + ":"
        for column in columns:
            values = self._chain(text[column], meta.transforms, target, problems)
            bits |= np.where(values.spread(is_present(values.target)), self._bits[lang], 0)
            items.append(values.map(lambda t: wrap(start, json_strings(t), "}")).rows())
        return obj(items, _member_start(key) + "[", "]"), bits

    def _metadata_items(
        self, key: str, meta: MetadataSpec, values: Values, problems: _Problems
    ) -> tuple[Text, np.ndarray]:
        """A column that splits into several values or translates codes, in column form.

        The work is done once per distinct text of the column (partners repeat the same few
        category lists), item by item in flattened form, then spread back to the rows.
        """
        target = f"metadata_raw.{key}"
        encoded = values if values.indices is not None else Values.encoded(values.rows())
        assert encoded.indices is not None
        row_codes = encoded.indices
        distinct = encoded.target.combine_chunks()
        if meta.split is not None:
            lists = pc.split_pattern(distinct, pattern=meta.split)
            flat = pc.utf8_trim_whitespace(pc.list_flatten(lists))
            owners = np.asarray(pc.list_parent_indices(lists), dtype=np.int64)
        else:
            flat = distinct
            owners = np.arange(len(distinct), dtype=np.int64)
        items, flags = apply_chain(
            pa.chunked_array([flat], type=TEXT), meta.transforms, blank_possible=meta.split is None
        )
        reasons: dict[int, list[str]] = {}
        for flag in flags:
            _add_reasons(reasons, owners[flag.positions], flag, target)

        lang = meta.language or self.spec.default_language
        if meta.translate is None:
            fragments = wrap("{" + constant(lang) + ":", json_strings(items), "}")
            item_bits = np.where(is_present(items), self._bits[lang], 0)
        else:
            fragments, item_bits = self._translate(key, meta, lang, items, owners, reasons)

        present = is_present(fragments)
        encoded_fragments = pc.dictionary_encode(fragments.combine_chunks(), null_encoding="encode")
        codes = np.asarray(encoded_fragments.indices.to_numpy(zero_copy_only=False), np.int64)
        repeated = pd.Index(owners * (int(codes.max(initial=0)) + 2) + codes).duplicated()
        keep = present & ~repeated
        kept_owners = owners[keep]
        counts = np.bincount(kept_owners, minlength=len(distinct))
        offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        kept = fragments.filter(pa.array(keep)).combine_chunks()
        joined = pc.binary_join(pa.LargeListArray.from_arrays(pa.array(offsets), kept), lit(","))
        per_distinct = pc.if_else(pa.array(counts > 0), joined, pa.scalar(None, TEXT))
        per_distinct = pc.binary_join_element_wise(
            lit(_member_start(key) + "["), per_distinct, lit("]"), lit("")
        )
        distinct_bits = np.zeros(len(distinct), dtype=np.int64)
        for bit in self._bits.values():
            hit = np.bincount(
                kept_owners, weights=(item_bits[keep] & bit) != 0, minlength=len(distinct)
            )
            distinct_bits |= np.where(hit > 0, bit, 0)

        if reasons:
            bad = np.flatnonzero(np.isin(row_codes, np.fromiter(reasons, dtype=np.int64)))
            problems.add(bad.tolist(), [reasons[code] for code in row_codes[bad].tolist()])
        fragment = pc.take(per_distinct, pa.array(row_codes))
        return pa.chunked_array([fragment], type=TEXT), distinct_bits[row_codes]

    def _translate(
        self,
        key: str,
        meta: MetadataSpec,
        lang: str,
        items: Text,
        owners: np.ndarray,
        reasons: dict[int, list[str]],
    ) -> tuple[Text, np.ndarray]:
        table = self._tables[key]
        index = pc.index_in(pc.utf8_lower(items), value_set=table.codes)
        fragments = pc.take(table.fragments, index)
        item_bits = np.asarray(
            pc.fill_null(pc.take(table.bits, index), 0).to_numpy(zero_copy_only=False),
            dtype=np.int64,
        )
        unknown = pc.and_(pc.is_valid(items), pc.is_null(fragments))
        if meta.unknown == "keep":
            own = wrap("{" + constant(lang) + ":", json_strings(items), "}")
            fragments = pc.if_else(unknown, own, fragments)
            mask = np.asarray(unknown.to_numpy(zero_copy_only=False), dtype=bool)
            item_bits = np.where(mask, self._bits[lang], item_bits)
        elif meta.unknown == "reject":
            mask = np.asarray(unknown.to_numpy(zero_copy_only=False), dtype=bool)
            positions = np.flatnonzero(mask)
            if len(positions):
                values = pc.take(items, pa.array(positions)).to_pylist()
                flag = Flag("translation", positions, values, table.message)
                _add_reasons(reasons, owners[positions], flag, f"metadata_raw.{key}")
        return fragments, item_bits

    def _metadata_zipped(
        self, key: str, meta: MetadataSpec, text: dict[str, Values], problems: _Problems
    ) -> tuple[Text, np.ndarray]:
        """Per-language columns that each split into several values, paired by position.

        Rare enough to be done in Python once per distinct combination of the columns' texts.
        """
        target = f"metadata_raw.{key}"
        languages = sorted(meta.languages or {})
        codes, items, reasons = [], [], []
        for lang in languages:
            encoded = Values.encoded(text[(meta.languages or {})[lang]].rows())
            assert encoded.indices is not None
            codes.append(encoded.indices)
            lists = pc.split_pattern(encoded.target.combine_chunks(), pattern=meta.split or ";")
            owners = np.asarray(pc.list_parent_indices(lists), dtype=np.int64)
            flat = pc.utf8_trim_whitespace(pc.list_flatten(lists))
            result, flags = apply_chain(pa.chunked_array([flat], type=TEXT), meta.transforms)
            found: dict[int, list[str]] = {}
            for flag in flags:
                _add_reasons(found, owners[flag.positions], flag, target)
            per_distinct: list[list[str]] = [[] for _ in range(len(encoded.target))]
            for owner, value in zip(owners.tolist(), result.to_pylist(), strict=True):
                if value is not None and value not in per_distinct[owner]:
                    per_distinct[owner].append(value)
            items.append(per_distinct)
            reasons.append(found)
        combos, row_combo = np.unique(np.stack(codes, axis=1), axis=0, return_inverse=True)
        row_combo = row_combo.reshape(-1)
        fragments: list[str | None] = []
        combo_bits = np.zeros(len(combos), dtype=np.int64)
        combo_reasons: dict[int, list[str]] = {}
        for number, combo in enumerate(combos.tolist()):
            found_reasons = [r for i, code in enumerate(combo) for r in reasons[i].get(code, [])]
            if found_reasons:
                combo_reasons[number] = found_reasons
            value_list = []
            lists_of = [items[i][code] for i, code in enumerate(combo)]
            for position in itertools.zip_longest(*lists_of):
                value = {lang: v for lang, v in zip(languages, position, strict=True) if v}
                value_list.append(value)
                for lang in value:
                    combo_bits[number] |= self._bits[lang]
            fragments.append(_member_start(key) + constant(value_list) if value_list else None)
        if combo_reasons:
            bad = np.flatnonzero(np.isin(row_combo, np.fromiter(combo_reasons, dtype=np.int64)))
            problems.add(bad.tolist(), [combo_reasons[c] for c in row_combo[bad].tolist()])
        fragment = pc.take(pa.array(fragments, type=TEXT), pa.array(row_combo))
        return pa.chunked_array([fragment], type=TEXT), combo_bits[row_combo]

    def _payload(self, key: Text, fields: dict[str, Values], metadata: Text | None) -> Text:
        model = self.model
        fixed: dict[str, Any] = {
            "type_id": model.type_id,
            "default_container_id": model.default_container_id,
            "generate_relationships": model.generate_relationships,
            "location_code": self.spec.location_code,
            "new_event_join_type": model.new_event_join_type,
            "application_id": model.application_id,
        }
        members: dict[str, jsoncol.Part] = {
            name: lit(constant(name) + ":" + constant(value))
            for name, value in fixed.items()
            if value is not None
        }
        members["registration_id"] = json_member("registration_id", key)
        for name, values in fields.items():
            if model.send_empty:
                values = values.replace(pc.fill_null(values.target, lit("")))
            members[name] = values.replace(json_member(name, values.target)).rows()
        if metadata is not None:
            members["metadata_raw"] = metadata
        return obj([members[name] for name in sorted(members)])


class _Table:
    """A translation table prepared for lookups in column form."""

    def __init__(self, spec: MappingSpec, key: str, bits: dict[str, int]):
        meta = spec.model.metadata[key]
        table = spec.tables[key]
        wanted = sorted(meta.output_languages or table.languages)
        codes, fragments, masks = [], [], []
        for code, texts in table.lookup().items():
            chosen = {lang: texts[lang] for lang in wanted if texts.get(lang)}
            codes.append(code)
            fragments.append(constant(chosen) if chosen else None)
            masks.append(sum(bits[lang] for lang in chosen))
        self.codes = pa.array(codes, type=TEXT)
        self.fragments = pa.array(fragments, type=TEXT)
        self.bits = pa.array(masks, type=pa.int64())
        self.message = (
            f"{{value}} is not a code of {table.origin} (or has no text in {', '.join(wanted)})"
        )


def _add_reasons(
    reasons: dict[int, list[str]], owners: np.ndarray, flag: Flag, target: str
) -> None:
    for owner, value in zip(owners.tolist(), flag.values, strict=True):
        message = flag.message.format(value=repr(value))
        reasons.setdefault(owner, []).append(f"{flag.rule}: {target}: {message}")


def _render(template: Template, text: dict[str, Values], fields: dict[str, Values]) -> Text:
    """Render a template; separators around empty placeholders are left out."""
    parts = []
    for placeholder in template.placeholders:
        source = text[placeholder.name] if placeholder.is_column else fields[placeholder.name]
        done = nullify_empty(apply_simple(source.target, placeholder.transforms))
        parts.append(source.replace(done).rows())
    lead, trail = template.literals[0], template.literals[-1]
    if lead:
        parts[0] = pc.binary_join_element_wise(lit(lead), parts[0], lit(""))
    if trail:
        parts[-1] = pc.binary_join_element_wise(parts[-1], lit(trail), lit(""))
    result = parts[0]
    for separator, part in zip(template.literals[1:-1], parts[1:], strict=True):
        both = pc.binary_join_element_wise(result, part, lit(separator))
        result = pc.coalesce(both, result, part)
    return result


def _filter_mask(item: FilterSpec, values: Text) -> np.ndarray:
    if item.in_ is not None or item.not_in is not None:
        listed = item.in_ if item.in_ is not None else item.not_in
        probe = pc.utf8_lower(pc.utf8_trim_whitespace(values))
        options = pa.array([value.strip().lower() for value in listed or []], type=TEXT)
        hit = pc.fill_null(pc.is_in(probe, value_set=options), False)
        if item.not_in is not None:
            hit = pc.invert(hit)
    elif item.matches is not None:
        hit = pc.fill_null(pc.match_substring_regex(values, pattern=item.matches), False)
    else:
        empty = pc.is_null(nullify_empty(values))
        hit = empty if item.empty else pc.invert(empty)
    return np.asarray(hit.to_numpy(zero_copy_only=False), dtype=bool)


def _member_start(name: str) -> str:
    return constant(name) + ":"


def _language_list(languages: tuple[str, ...], bits: int) -> str:
    return ",".join(lang for index, lang in enumerate(languages) if bits & (1 << index))


def _series(values: Text) -> pd.api.extensions.ExtensionArray:
    return pd.array(values, dtype="str")
