"""Validate mapped chunks with the GX suite of their mapping; set bad rows aside as rejects."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from grip.config import ApplicationSpec
from grip.errors import DataValidationError
from grip.mapping.engine import LANGUAGES_COLUMN, METADATA_PREFIX, MappedChunk
from grip.mapping.loader import MappingSpec
from grip.validation.rules import Rule, failing_rows, rules_for

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Reject:
    """A source row set aside by validation, with every reason (``rule: column: message``)."""

    source_row: int
    registration_id: str | None
    reasons: list[str]
    data_type: str

    @property
    def rules(self) -> list[str]:
        """The names of the rules the row failed, each once, in the order of the reasons."""
        return list(dict.fromkeys(reason.split(":", 1)[0] for reason in self.reasons))


@dataclass
class ValidatedChunk:
    """A chunk after validation: the rows that go on, the rejects and the GX result summary.

    ``result`` holds, per rule, whether GX found it met and how many rows failed it, with
    GX's own statistics; it is kept in the run's report.
    """

    data_type: str
    valid: MappedChunk
    rejects: list[Reject]
    result: dict[str, Any] = field(default_factory=dict)

    @property
    def checked(self) -> int:
        """Rows that went through validation."""
        return len(self.valid) + len(self.rejects)


class KeySet:
    """The registration ids already seen in a run, across chunks and data types.

    Grip keys profiles by ``registration_id`` within the application, so a key must appear once
    in a run, whatever the data type. Keep one KeySet per run and pass it to every Validator
    of the run; the first row with a key goes on and later ones are rejected (also when the
    first was itself rejected for another reason: which of them is right cannot be told).

    NOTE: the ids are kept in memory (about 100 bytes each); a run of ten million rows needs
    about 1 GB for them.
    """

    def __init__(self) -> None:
        self._first: dict[str, dict[str, int]] = {}

    def __len__(self) -> int:
        return sum(len(keys) for keys in self._first.values())

    def __contains__(self, key: object) -> bool:
        return any(key in keys for keys in self._first.values())

    def claim(self, keys: pd.Series, data_type: str) -> dict[int, str]:
        """Record a chunk's keys (a Series indexed by source row).

        Returns:
            ``{source row: reason}`` for the rows whose key an earlier chunk already had.
        """
        present = keys[keys.notna()]
        # reversed, so that the first row of a key repeated within the chunk is the one kept
        new = dict(zip(present.tolist()[::-1], present.index.tolist()[::-1], strict=True))
        repeats: dict[int, str] = {}
        for other, seen in self._first.items():
            common = new.keys() & seen.keys()
            if not common:
                continue
            suffix = "" if other == data_type else f" of the {other} data"
            for row, key in present[present.isin(list(common))].items():
                repeats[int(row)] = (
                    f"unique_key: registration_id: {key!r} is already the key of source row "
                    f"{seen[key]}{suffix} in this run"
                )
            for key in common:
                del new[key]
        self._first.setdefault(data_type, {}).update(new)
        return repeats


class Validator:
    """Checks mapped chunks against the GX suite built from one mapping.

    Use one Validator per data type and run; it keeps the GX results of its chunks for the
    run's Data Docs. Rows failing a rule become rejects with every reason; the rest go on.

    Args:
        spec: The mapping the chunks come from.
        application: The application (enabled languages, type ids); without it the languages
            and type id rules are left out.
        context: A GX context to add the suite to; by default the process's shared
            ephemeral context (created, and great_expectations imported, on first validation).
        keys: Registration ids seen earlier in the run (shared by a run's validators); by
            default a KeySet of this validator's own.
    """

    def __init__(
        self,
        spec: MappingSpec,
        application: ApplicationSpec | None = None,
        *,
        context: Any = None,
        keys: KeySet | None = None,
    ):
        self.spec = spec
        self.application = application
        self.rules: list[Rule] = rules_for(spec, application)
        self.keys = keys if keys is not None else KeySet()
        self.results: list[dict[str, Any]] = []
        self._context = context
        self._runner: Any = None
        self._columns = list(dict.fromkeys(rule.column for rule in self.rules))

    def build_suite(self) -> None:
        """Build the GX suite now (it is otherwise built by the first validation).

        Raises:
            ConfigError: An expectation the mapping adds cannot be built (its file and line).
        """
        self._suite()

    def _suite(self) -> Any:
        if self._runner is None:
            from grip.validation.gx import SuiteRunner, gx_context

            context = self._context if self._context is not None else gx_context()
            self._runner = SuiteRunner(context, self.spec.data_type, self.rules, self.spec.path)
        return self._runner

    def validate(self, chunk: MappedChunk) -> ValidatedChunk:
        """Validate a chunk; return the valid rows and the rejects.

        Raises:
            DataValidationError: A batch-level rule failed (every row has a type id the
                application does not know) or GX could not evaluate an expectation.
        """
        rows = chunk.rows
        reasons: dict[int, list[str]] = {row: list(found) for row, found in chunk.problems.items()}
        summary: dict[str, Any] = {"rows": len(rows), "rules": []}
        if len(rows):
            summary = self._check(rows, reasons)
            self.results.append(summary)
            repeated = self.keys.claim(rows["registration_id"], chunk.data_type)
            for row, reason in repeated.items():
                if not any(r.startswith("unique_key:") for r in reasons.get(row, [])):
                    reasons.setdefault(row, []).append(reason)

        rejected = rows.index.isin(list(reasons))
        rejects = [
            Reject(int(row), _text(key), reasons[int(row)], chunk.data_type)
            for row, key in zip(
                rows.index[rejected].tolist(),
                rows["registration_id"][rejected].tolist(),
                strict=True,
            )
        ]
        summary["rejected"] = len(rejects)
        if rejects:
            logger.info(
                "Validated %d %s rows: %d rejected (%s)",
                len(rows),
                chunk.data_type,
                len(rejects),
                ", ".join(f"{r} {n}" for r, n in reason_counts(rejects).most_common(5)),
            )
        return ValidatedChunk(chunk.data_type, chunk.select(~rejected), rejects, summary)

    def _check(self, rows: pd.DataFrame, reasons: dict[int, list[str]]) -> dict[str, Any]:
        """Run the suite and find the failing rows of each rule.

        GX runs with the BASIC result format, which counts failures without listing them; the
        failing rows of a failed expectation are then found again in pandas, and the count must
        equal GX's. Where it cannot be re-evaluated (an expectation this module does not know)
        or the counts differ, the chunk runs once more in the COMPLETE format and GX's own list
        of failing rows is used.
        """
        # without an index name GX lists failing rows as plain index values
        frame = rows[self._columns].rename_axis(None)
        runner = self._suite()
        result = runner.run(frame, "BASIC")
        outcomes = self._outcomes(result)
        failed: dict[int, np.ndarray] = {}
        for index, (success, count, _) in outcomes.items():
            if success:
                continue
            mask = failing_rows(self.rules[index], frame[self.rules[index].column])
            if mask is None or int(mask.sum()) != count:
                logger.debug("Re-running %s in COMPLETE format", self.rules[index].name)
                result = runner.run(frame, "COMPLETE")
                outcomes = self._outcomes(result)
                failed = {
                    i: np.asarray(rows_, dtype=np.int64) for i, (_, _, rows_) in outcomes.items()
                }
                break
            failed[index] = frame.index[mask.to_numpy(dtype=bool)].to_numpy()
        for index, rule in enumerate(self.rules):
            if index in failed and len(failed[index]):
                self._reasons(rule, failed[index], rows, reasons)
        return {
            "rows": len(rows),
            "success": bool(result.success),
            "statistics": dict(result.statistics),
            "rules": [
                {
                    "rule": self.rules[index].name,
                    "column": self.rules[index].column,
                    "expectation": self.rules[index].expectation,
                    "success": success,
                    "unexpected_count": count,
                }
                for index, (success, count, _) in sorted(outcomes.items())
            ],
        }

    def _outcomes(self, result: Any) -> dict[int, tuple[bool, int, list[Any]]]:
        """``{rule index: (success, failing count, failing rows if listed)}`` of a GX result."""
        outcomes = {}
        for item in result.results:
            index = int(item.expectation_config.meta["grip_index"])
            rule = self.rules[index]
            info = item.exception_info or {}
            if info.get("raised_exception"):
                message = str(info.get("exception_message", "")).splitlines()[0]
                raise DataValidationError(
                    f"{self.spec.data_type}: the check {rule.name} ({rule.expectation} on "
                    f"{rule.column}) could not run: {message}"
                )
            listed = list(item.result.get("unexpected_index_list") or [])
            count = int(item.result.get("unexpected_count") or 0)
            outcomes[index] = (bool(item.success), count, listed)
        return outcomes

    def _reasons(
        self, rule: Rule, failed: np.ndarray, rows: pd.DataFrame, reasons: dict[int, list[str]]
    ) -> None:
        values = rows[rule.column]
        where = _column_label(rule.column)
        if rule.batch:
            value = values.loc[failed[0]]
            raise DataValidationError(
                f"{self.spec.data_type}: {len(failed):,} of {len(rows):,} rows fail "
                f"{rule.name}: {rule.describe(_plain(value))}"
            )
        if rule.keep_first:
            # GX lists every row of a repeated key; the first of each goes on
            repeated = values.loc[failed].sort_index()
            later = repeated.duplicated(keep="first")
            first_rows = {value: int(row) for row, value in repeated[~later].items()}
            for row, value in repeated[later].items():
                reasons.setdefault(int(row), []).append(
                    f"{rule.name}: {where}: {value!r} is already the key of source row "
                    f"{first_rows[value]}"
                )
            return
        for row, value in values.loc[failed].items():
            reasons.setdefault(int(row), []).append(
                f"{rule.name}: {where}: {rule.describe(_plain(value))}"
            )

    def write_data_docs(self, folder: Path) -> Path | None:
        """Write GX Data Docs HTML for the chunks validated so far; return its index page.

        Returns None when nothing was validated (no GX run to show).
        """
        if self._runner is None:
            return None
        return self._runner.write_data_docs(Path(folder))


def reason_counts(rejects: Iterable[Reject]) -> Counter[str]:
    """How many rejects failed each rule (a reject counts once per rule)."""
    counts: Counter[str] = Counter()
    for reject in rejects:
        counts.update(reject.rules)
    return counts


def check_reject_share(
    read: int,
    rejected: int,
    max_share: float,
    data_type: str,
    *,
    reasons: Mapping[str, int] | None = None,
) -> None:
    """Fail the run when more than ``max_share`` of the validated rows were rejected.

    Args:
        read: Rows that reached validation (filtered rows do not count).
        rejected: Rows set aside as rejects.
        max_share: The integration's ``limits.max_reject_share`` (0.05 is 5%).
        data_type: For the message.
        reasons: Rejects per rule (see :func:`reason_counts`), to name the top reasons.

    Raises:
        DataValidationError: Saying how many rows were rejected and why.
    """
    if read <= 0 or rejected <= max_share * read:
        return
    top = ""
    if reasons:
        common = Counter(reasons).most_common(3)
        top = "; most common reasons: " + ", ".join(f"{rule} ({n:,})" for rule, n in common)
    raise DataValidationError(
        f"{data_type}: {rejected:,} of {read:,} rows rejected ({rejected / read:.1%}), more than "
        f"the {max_share:.1%} the integration allows{top}; see the rejects report, fix the "
        "export or the mapping, or raise limits.max_reject_share"
    )


def _column_label(column: str) -> str:
    if column == LANGUAGES_COLUMN:
        return "metadata_raw"
    if column.startswith(METADATA_PREFIX):
        return "metadata_raw." + column[len(METADATA_PREFIX) :]
    return column


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    return None if value is None or (isinstance(value, float) and value != value) else value


def _text(value: Any) -> str | None:
    plain = _plain(value)
    return None if plain is None else str(plain)
