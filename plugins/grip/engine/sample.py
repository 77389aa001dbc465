"""A deterministic sample of records that covers every data type, language and rare field."""

from __future__ import annotations

import hashlib
import heapq
import json
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

Feature = tuple[str, ...]
"""Something a sample should show: ``("type", dt)``, ``("lang", code)``, ``("field", dt, name)``."""

OFTEN_EMPTY_SHARE = 0.5
"""A field filled in fewer than this share of a data type's records counts as often empty."""

_PER_FEATURE = 5


def rank(data_type: str, registration_id: str) -> int:
    """A stable pseudo-random rank of a record: the same source gives the same sample."""
    digest = hashlib.blake2b(f"{data_type}\x1f{registration_id}".encode(), digest_size=8)
    return int.from_bytes(digest.digest(), "big")


def payload_features(
    data_type: str, payload: Mapping[str, Any], languages: Sequence[str]
) -> tuple[frozenset[str], frozenset[str]]:
    """Return the filled field names and the enabled languages a payload shows text in.

    ``metadata_raw`` keys count as fields of their own (``metadata_raw.<key>``).
    """
    enabled = {code.lower() for code in languages}
    filled: set[str] = set()
    seen_languages: set[str] = set()
    for name, value in payload.items():
        if name == "metadata_raw" and isinstance(value, Mapping):
            for key, entries in value.items():
                if _filled(entries):
                    filled.add(f"metadata_raw.{key}")
                for entry in entries if isinstance(entries, list) else [entries]:
                    if isinstance(entry, Mapping):
                        seen_languages.update(
                            str(code).lower()
                            for code, text in entry.items()
                            if _filled(text) and str(code).lower() in enabled
                        )
        elif _filled(value):
            filled.add(name)
    return frozenset(filled), frozenset(seen_languages)


def _filled(value: Any) -> bool:
    if value is None:
        return False
    if isinstance(value, str):
        return bool(value.strip())
    if isinstance(value, list | dict):
        return any(_filled(v) for v in (value.values() if isinstance(value, dict) else value))
    return True


@dataclass(order=True)
class _Candidate:
    neg_rank: int
    data_type: str = field(compare=False)
    registration_id: str = field(compare=False)
    features: frozenset[Feature] = field(compare=False)

    @property
    def rank(self) -> int:
        return -self.neg_rank


class SampleSelector:
    """Chooses ``size`` records from a stream of payloads, deterministically.

    Feed every valid record with :meth:`offer`; memory stays bounded because only the best few
    candidates (lowest rank) of each feature are kept. :meth:`select` then picks greedily the
    records that show the most features not yet shown (each data type, each enabled language
    with text, each field that is often empty), and fills the remaining places with the
    lowest-ranked records, data type by data type in turn.

    Args:
        size: records wanted (10 to 50 in practice); fewer if the source holds fewer.
        languages: the application's enabled languages.
    """

    def __init__(self, size: int, languages: Sequence[str]):
        self.size = size
        self.languages = list(languages)
        self._pools: dict[Feature, list[_Candidate]] = {}
        self._rows: dict[str, int] = {}
        self._filled: dict[str, dict[str, int]] = {}
        self._chosen: list[_Candidate] = []

    def offer(self, data_type: str, registration_id: str, payload: Mapping[str, Any]) -> None:
        """Consider one valid record for the sample."""
        fields_, languages = payload_features(data_type, payload, self.languages)
        self._rows[data_type] = self._rows.get(data_type, 0) + 1
        counts = self._filled.setdefault(data_type, {})
        for name in fields_:
            counts[name] = counts.get(name, 0) + 1
        features: set[Feature] = {("type", data_type)}
        features.update(("lang", code) for code in languages)
        features.update(("field", data_type, name) for name in fields_)
        candidate = _Candidate(
            -rank(data_type, registration_id), data_type, registration_id, frozenset(features)
        )
        for feature in features:
            keep = self.size if feature[0] == "type" else _PER_FEATURE
            pool = self._pools.setdefault(feature, [])
            if len(pool) < keep:
                heapq.heappush(pool, candidate)
            elif candidate.neg_rank > pool[0].neg_rank:
                heapq.heapreplace(pool, candidate)

    def offer_json(self, data_type: str, ids: Iterable[str], payloads: Iterable[str]) -> None:
        """Consider a chunk of records given as canonical JSON text."""
        for registration_id, text in zip(ids, payloads, strict=True):
            self.offer(data_type, str(registration_id), json.loads(text))

    def often_empty(self) -> dict[str, list[str]]:
        """The fields of each data type filled in some but fewer than half of its records."""
        out = {}
        for data_type, counts in self._filled.items():
            rows = self._rows[data_type]
            out[data_type] = sorted(
                name for name, n in counts.items() if 0 < n < OFTEN_EMPTY_SHARE * rows
            )
        return out

    def wanted_features(self) -> set[Feature]:
        """The features the sample should show: types, languages with text, often-empty fields."""
        wanted: set[Feature] = {("type", dt) for dt in self._rows}
        wanted.update(f for f in self._pools if f[0] == "lang")
        for data_type, names in self.often_empty().items():
            wanted.update(("field", data_type, name) for name in names)
        return wanted

    def select(self, exclude: Collection[str] = ()) -> list[tuple[str, str]]:
        """Return the chosen ``(data_type, registration_id)`` keys, in rank order.

        Args:
            exclude: registration ids that may not be chosen (duplicates found after the read).
        """
        banned = set(exclude)
        wanted = self.wanted_features()
        pool: dict[tuple[str, str], _Candidate] = {}
        for feature, candidates in self._pools.items():
            if feature in wanted:
                for c in candidates:
                    if c.registration_id not in banned:
                        pool[(c.data_type, c.registration_id)] = c
        ordered = sorted(pool.values(), key=lambda c: c.rank)
        chosen: dict[tuple[str, str], _Candidate] = {}
        uncovered = set(wanted)
        while uncovered and len(chosen) < self.size:
            best = max(
                (c for c in ordered if (c.data_type, c.registration_id) not in chosen),
                key=lambda c: (len(c.features & uncovered), -c.rank),
                default=None,
            )
            if best is None or not best.features & uncovered:
                break
            chosen[(best.data_type, best.registration_id)] = best
            uncovered -= best.features
        by_type = {
            dt: sorted(
                (c for c in self._pools.get(("type", dt), []) if c.registration_id not in banned),
                key=lambda c: c.rank,
            )
            for dt in sorted(self._rows)
        }
        while len(chosen) < self.size and any(by_type.values()):
            for data_type in list(by_type):
                queue = by_type[data_type]
                while queue and (queue[0].data_type, queue[0].registration_id) in chosen:
                    queue.pop(0)
                if queue and len(chosen) < self.size:
                    c = queue.pop(0)
                    chosen[(c.data_type, c.registration_id)] = c
        self._chosen = sorted(chosen.values(), key=lambda c: c.rank)
        return [(c.data_type, c.registration_id) for c in self._chosen]

    def coverage(self) -> dict[str, Any]:
        """Describe what the last :meth:`select` shows, for the sample report."""
        wanted = self.wanted_features()
        shown: set[Feature] = set()
        for c in self._chosen:
            shown |= c.features
        missing = sorted(wanted - shown)
        return {
            "records": len(self._chosen),
            "data_types": sorted({c.data_type for c in self._chosen}),
            "languages": sorted(f[1] for f in shown if f[0] == "lang"),
            "often_empty_fields": self.often_empty(),
            "not_shown": ["/".join(f) for f in missing],
        }
