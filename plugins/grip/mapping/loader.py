"""Load mapping files strictly and report every problem: structure, columns, languages, tables."""

from __future__ import annotations

import csv
import difflib
import hashlib
import json
import logging
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError as PydanticValidationError

from grip.config import ApplicationSpec
from grip.errors import ConfigError
from grip.mapping.spec import (
    GRIP_FIELDS,
    IDENTIFIER,
    MappingModel,
    MetadataSpec,
    unknown_field_message,
)
from grip.mapping.template import Template, parse_template
from grip.yamlfile import (
    KeyPath,
    Problem,
    YamlDocument,
    join_problems,
    pydantic_problems,
    read_yaml,
)

if TYPE_CHECKING:
    from grip.config import Integration

logger = logging.getLogger(__name__)

_SHOWN_COLUMNS = 25


@dataclass(frozen=True)
class TranslationTable:
    """Codes and their texts per language, read from a CSV or YAML file or written inline.

    Codes are matched after trimming and without regard to case (lower-cased).
    """

    origin: str
    languages: tuple[str, ...]
    entries: dict[str, dict[str, str]]

    def lookup(self) -> dict[str, dict[str, str]]:
        """The entries keyed by the code as it is matched (trimmed, lower case)."""
        return {code.strip().lower(): texts for code, texts in self.entries.items()}


class MappingSpec:
    """A mapping file that loaded without problems, with everything the engine needs resolved.

    Attributes:
        path: The mapping file.
        model: The validated content of the file.
        tables: Translation tables by metadata key.
        location_code: The payload's ``location_code`` as written (mapping, else application).
        default_language: Language of single-language metadata values (location code, lower).
        enabled_languages: The application's languages, or None when loaded without one.
        templates: Parsed templates by field name.
        field_order: Field names in an order where every template comes after what it reads.
        checked_fields: Fields that validation reads (required ones, e-mail, headline,
            summary, columns of the mapping's own expectations); the engine gives them their
            own columns.
    """

    def __init__(
        self,
        path: Path,
        model: MappingModel,
        tables: dict[str, TranslationTable],
        application: ApplicationSpec | None,
    ):
        self.path = path
        self.model = model
        self.tables = tables
        self.location_code = model.location_code or (
            application.location_code if application is not None else "en-gb"
        )
        self.default_language = self.location_code.lower()
        self.enabled_languages = tuple(application.languages) if application is not None else None
        self.templates: dict[str, Template] = {
            name: parse_template(field.template)
            for name, field in model.fields.items()
            if field.template is not None
        }
        self.field_order = _field_order(model, self.templates)
        self.checked_fields = _checked_fields(model)
        self.required_columns = frozenset(_columns_read(model, self.templates))
        self.fingerprint = _fingerprint(self)

    @property
    def data_type(self) -> str:
        """The data type the mapping fills (visitor, exhibitor, ...)."""
        return self.model.data_type

    @property
    def type_id(self) -> int:
        """Grip's ``type_id`` for the data type."""
        return self.model.type_id

    def metadata_languages(self, key: str) -> tuple[str, ...]:
        """Languages the metadata key can write, in the order they are written."""
        meta = self.model.metadata[key]
        if meta.languages is not None:
            return tuple(sorted(meta.languages))
        if meta.translate is not None:
            table_languages = self.tables[key].languages
            chosen = meta.output_languages or table_languages
            kept = [lang for lang in chosen if lang in table_languages]
            if meta.unknown == "keep":
                kept.append(meta.language or self.default_language)
            return tuple(sorted(set(kept)))
        return (meta.language or self.default_language,)

    @property
    def output_languages(self) -> tuple[str, ...]:
        """Every language the mapping can write into ``metadata_raw``."""
        found = {lang for key in self.model.metadata for lang in self.metadata_languages(key)}
        return tuple(sorted(found))

    def __repr__(self) -> str:
        return f"MappingSpec({self.data_type}, {self.path}, {self.fingerprint[:12]})"


def load_mapping(
    path: Path | str,
    application: ApplicationSpec | None = None,
    columns: Collection[str] | None = None,
) -> MappingSpec:
    """Load a mapping file strictly.

    Args:
        path: The mapping file (YAML).
        application: The application's enabled languages, type ids and containers; without it
            languages, type ids and containers are not checked against Grip's configuration.
        columns: The source's columns; without them the columns the mapping reads are not
            checked (they are checked again when the first chunk is mapped).

    Returns:
        The resolved mapping.

    Raises:
        ConfigError: Listing every problem as ``file:line: key.path: message``.
    """
    spec, problems = check_mapping(path, application, columns)
    if problems or spec is None:
        raise ConfigError(join_problems(problems))
    logger.debug("Loaded mapping %s (%s)", spec.path, spec.fingerprint[:12])
    return spec


def check_mapping(
    path: Path | str,
    application: ApplicationSpec | None = None,
    columns: Collection[str] | None = None,
) -> tuple[MappingSpec | None, list[Problem]]:
    """Check a mapping file and return the spec (None when there are problems) and the problems."""
    path = Path(path)
    try:
        doc = read_yaml(path)
    except ConfigError as err:
        return None, [Problem(path, (), None, _strip_file(str(err), path))]
    if not isinstance(doc.data, dict):
        return None, [doc.problem((), "expected a mapping of keys at the top level")]

    problems: list[Problem] = []
    model: MappingModel | None = None
    try:
        model = MappingModel.model_validate(doc.data)
    except PydanticValidationError as err:
        problems.extend(pydantic_problems(doc, err))
    checker = _Checker(doc, application, columns)
    problems.extend(checker.run())
    problems = _unique_sorted(problems)
    if problems or model is None:
        return None, problems
    return MappingSpec(path.resolve(), model, checker.tables, application), []


def check_integration(
    integration: Integration, columns_by_type: Mapping[str, Collection[str]] | None = None
) -> list[Problem]:
    """Check every mapping of an integration at once; return all problems (empty when fine).

    Besides each file's own problems it checks that each mapping's ``data_type`` matches the
    integration's key for it and that no two data types share a ``type_id``.
    """
    columns_by_type = columns_by_type or {}
    problems: list[Problem] = []
    type_ids: dict[int, str] = {}
    for data_type in integration.spec.data_types:
        path = integration.mapping_path(data_type)
        spec, found = check_mapping(
            path, integration.spec.application, columns_by_type.get(data_type)
        )
        problems.extend(found)
        if spec is None:
            continue
        if spec.data_type != data_type:
            problems.append(
                _problem_at(
                    path,
                    ("data_type",),
                    f"data_type {spec.data_type!r} differs from the integration's data type "
                    f"{data_type!r} ({integration.path}); use the same name in both",
                )
            )
        other = type_ids.setdefault(spec.type_id, data_type)
        if other != data_type:
            problems.append(
                _problem_at(
                    path, ("type_id",), f"type_id {spec.type_id} is also the type of {other!r}"
                )
            )
    return problems


def _problem_at(path: Path, key: KeyPath, message: str) -> Problem:
    return read_yaml(path).problem(key, message)


def _strip_file(message: str, path: Path) -> str:
    prefix = f"{path}: "
    return message[len(prefix) :] if message.startswith(prefix) else message


def _unique_sorted(problems: list[Problem]) -> list[Problem]:
    seen: dict[str, Problem] = {}
    for problem in problems:
        seen.setdefault(str(problem), problem)
    return sorted(seen.values(), key=lambda p: (p.file, p.line or 0))


class _Checker:
    """Checks on the raw YAML that pydantic cannot make: names, columns, languages, tables.

    It reads the raw data defensively so that it reports its problems even when the file also
    has structural ones.
    """

    def __init__(
        self,
        doc: YamlDocument,
        application: ApplicationSpec | None,
        columns: Collection[str] | None,
    ):
        self.doc = doc
        self.data: dict[str, Any] = doc.data
        self.application = application
        self.columns = list(columns) if columns is not None else None
        self.problems: list[Problem] = []
        self.tables: dict[str, TranslationTable] = {}

    def add(self, path: KeyPath, message: str) -> None:
        self.problems.append(self.doc.problem(path, message))

    def run(self) -> list[Problem]:
        self._check_fields()
        self._check_key()
        self._check_filters()
        self._check_metadata()
        self._check_application()
        self._check_expectations()
        self._check_regexes()
        for path, column in self._column_references():
            self._check_column(path, column)
        return self.problems

    def _check_column(self, path: KeyPath, column: Any) -> None:
        if not isinstance(column, str) or self.columns is None or column in self.columns:
            return
        close = difflib.get_close_matches(column, self.columns, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        shown = ", ".join(self.columns[:_SHOWN_COLUMNS])
        more = ", ..." if len(self.columns) > _SHOWN_COLUMNS else ""
        self.add(path, f"column {column!r} is not in the source{hint}; it has: {shown}{more}")

    def _column_references(self) -> Iterator[tuple[KeyPath, Any]]:
        key = self.data.get("key")
        if isinstance(key, str):
            yield ("key",), key
        elif isinstance(key, dict):
            yield from _columns_at(("key",), key)
        for index, item in enumerate(_as_list(self.data.get("filters"))):
            if isinstance(item, dict) and "column" in item:
                yield ("filters", index, "column"), item["column"]
        for name, field in _as_dict(self.data.get("fields")).items():
            if isinstance(field, str):
                yield ("fields", name), field
            elif isinstance(field, dict):
                yield from _columns_at(("fields", name), field)
                template = field.get("template")
                if isinstance(template, str):
                    try:
                        parsed = parse_template(template)
                    except ValueError:
                        continue
                    for column in parsed.columns:
                        yield ("fields", name, "template"), column
        for name, meta in _as_dict(self.data.get("metadata")).items():
            if isinstance(meta, str):
                yield ("metadata", name), meta
            elif isinstance(meta, dict):
                yield from _columns_at(("metadata", name), meta)
                for lang, column in _as_dict(meta.get("languages")).items():
                    yield ("metadata", name, "languages", lang), column

    def _check_fields(self) -> None:
        fields = _as_dict(self.data.get("fields"))
        graph: dict[str, list[str]] = {}
        for name, field in fields.items():
            if name not in GRIP_FIELDS:
                self.add(("fields", name), unknown_field_message(name))
            template = field.get("template") if isinstance(field, dict) else None
            if not isinstance(template, str):
                continue
            try:
                parsed = parse_template(template)
            except ValueError as err:
                self.add(("fields", name, "template"), str(err))
                continue
            graph[name] = list(parsed.fields)
            for ref in parsed.fields:
                if ref == name:
                    self.add(("fields", name, "template"), f"template of {name!r} names itself")
                elif ref not in fields:
                    self.add(("fields", name, "template"), _unknown_reference(ref, fields))
        cycle = _find_cycle(graph)
        if cycle:
            path = " -> ".join(cycle)
            self.add(
                ("fields", cycle[0], "template"), f"templates name each other in a loop: {path}"
            )

    def _check_key(self) -> None:
        key = self.data.get("key")
        if isinstance(key, dict) and isinstance(key.get("prefix"), str):
            prefix = key["prefix"]
            if "admin" in prefix.lower():
                self.add(("key", "prefix"), _ADMIN_MESSAGE.format(value=prefix))

    def _check_filters(self) -> None:
        seen: dict[str, int] = {}
        for index, item in enumerate(_as_list(self.data.get("filters"))):
            name = item.get("name") if isinstance(item, dict) else None
            if not isinstance(name, str):
                continue
            if name in seen:
                self.add(
                    ("filters", index, "name"),
                    f"filter name {name!r} is used twice (also filters[{seen[name]}]); "
                    "each filter needs its own name for the counts",
                )
            seen.setdefault(name, index)

    def _check_metadata(self) -> None:
        default = self._default_language()
        for name, meta in _as_dict(self.data.get("metadata")).items():
            path: KeyPath = ("metadata", name)
            if not IDENTIFIER.match(str(name)):
                self.add(path, f"metadata key {name!r} must be lower case letters, digits and '_'")
            if not isinstance(meta, dict):
                continue
            language = meta.get("language")
            if isinstance(language, str):
                self._check_enabled((*path, "language"), language)
            for lang in _as_dict(meta.get("languages")):
                self._check_enabled((*path, "languages", lang), lang)
            outputs = [
                lang for lang in _as_list(meta.get("output_languages")) if isinstance(lang, str)
            ]
            for index, lang in enumerate(outputs):
                self._check_enabled((*path, "output_languages", index), lang)
            translate = meta.get("translate")
            if translate is None:
                continue
            table = self._load_table((*path, "translate"), translate)
            if table is None:
                continue
            self.tables[name] = table
            if outputs:
                missing = [lang for lang in outputs if lang not in table.languages]
                if missing:
                    self.add(
                        (*path, "output_languages"),
                        f"the table {table.origin} has no column for {', '.join(missing)} "
                        f"(it has {', '.join(table.languages)})",
                    )
            else:
                for lang in table.languages:
                    self._check_enabled(
                        (*path, "translate"),
                        lang,
                        hint=f" (a column of {table.origin}; choose the languages to send "
                        "with 'output_languages')",
                    )
            if meta.get("unknown") == "keep":
                self._check_enabled((*path, "unknown"), meta.get("language") or default)

    def _default_language(self) -> str:
        code = self.data.get("location_code")
        if isinstance(code, str):
            return code.lower()
        return self.application.location_code.lower() if self.application else "en-gb"

    def _check_enabled(self, path: KeyPath, code: Any, hint: str = "") -> None:
        if self.application is None or not isinstance(code, str):
            return
        enabled = [lang.lower() for lang in self.application.languages]
        if code.lower() not in enabled:
            self.add(
                path,
                f"language {code!r} is not enabled for the application{hint}; enabled: "
                f"{', '.join(self.application.languages)} (Grip enables languages per "
                "application: ask the project manager, or leave this language out)",
            )

    def _load_table(self, path: KeyPath, translate: Any) -> TranslationTable | None:
        if isinstance(translate, dict):
            return self._inline_table(path, translate)
        if not isinstance(translate, str):
            return None
        file = (self.doc.path.parent / translate).resolve()
        if file.suffix.lower() not in (".csv", ".yaml", ".yml"):
            self.add(path, f"translation table {translate!r} must be a .csv, .yaml or .yml file")
            return None
        if not file.is_file():
            self.add(path, f"translation table {file} does not exist")
            return None
        before = len(self.problems)
        reader = self._csv_table if file.suffix.lower() == ".csv" else self._yaml_table
        table = reader(file)
        return table if len(self.problems) == before else None

    def _inline_table(self, path: KeyPath, raw: dict[str, Any]) -> TranslationTable | None:
        entries: dict[str, dict[str, str]] = {}
        for code, texts in raw.items():
            if not isinstance(texts, dict):
                return None  # the model reports the type
            entries[str(code)] = {str(k): str(v) for k, v in texts.items() if v is not None}
            for lang in texts:
                self._check_table_language((*path, code, lang), str(lang))
        languages = tuple(sorted({lang for texts in entries.values() for lang in texts}))
        return TranslationTable("inline table", languages, entries)

    def _check_table_language(self, path: KeyPath, lang: str) -> None:
        if lang != lang.lower() or " " in lang:
            self.add(path, f"language {lang!r} must be written lower case, like 'en-gb'")

    def _csv_table(self, file: Path) -> TranslationTable | None:
        try:
            with file.open(encoding="utf-8-sig", newline="") as handle:
                rows = list(csv.reader(handle))
        except (OSError, UnicodeDecodeError, csv.Error) as err:
            self.problems.append(Problem(file, (), None, f"cannot read the table: {err}"))
            return None
        if not rows or not rows[0] or rows[0][0].strip().lower() != "code":
            self.problems.append(
                Problem(file, (), 1, "the first column must be 'code', then one per language")
            )
            return None
        languages = [cell.strip() for cell in rows[0][1:]]
        for lang in languages:
            if lang != lang.lower() or not lang:
                self.problems.append(
                    Problem(file, (lang,), 1, "language columns are lower case codes like 'en-gb'")
                )
        entries: dict[str, dict[str, str]] = {}
        for line, row in enumerate(rows[1:], start=2):
            if not any(cell.strip() for cell in row):
                continue
            code = row[0].strip()
            if code.lower() in {c.lower() for c in entries}:
                self.problems.append(Problem(file, (code,), line, "code is listed twice"))
            if len(row) > len(languages) + 1:
                self.problems.append(
                    Problem(
                        file,
                        (code,),
                        line,
                        f"{len(row)} cells, the header has {len(languages) + 1}",
                    )
                )
            texts = {lang: cell.strip() for lang, cell in zip(languages, row[1:], strict=False)}
            entries[code] = {lang: text for lang, text in texts.items() if text}
        return TranslationTable(file.name, tuple(sorted(languages)), entries)

    def _yaml_table(self, file: Path) -> TranslationTable | None:
        try:
            doc = read_yaml(file)
        except ConfigError as err:
            self.problems.append(Problem(file, (), None, _strip_file(str(err), file)))
            return None
        if not isinstance(doc.data, dict):
            self.problems.append(doc.problem((), "expected code: {language: text} entries"))
            return None
        entries: dict[str, dict[str, str]] = {}
        for code, texts in doc.data.items():
            if not isinstance(texts, dict):
                self.problems.append(
                    doc.problem((code,), "expected {language: text} under the code")
                )
                continue
            for lang in texts:
                if str(lang) != str(lang).lower():
                    self.problems.append(
                        doc.problem((code, lang), "language codes are lower case like 'en-gb'")
                    )
            entries[str(code)] = {str(k): str(v) for k, v in texts.items() if v is not None}
        languages = tuple(sorted({lang for texts in entries.values() for lang in texts}))
        return TranslationTable(file.name, languages, entries)

    def _check_application(self) -> None:
        app = self.application
        if app is None:
            return
        location = self.data.get("location_code")
        if isinstance(location, str):
            self._check_enabled(("location_code",), location)
        type_id, data_type = self.data.get("type_id"), self.data.get("data_type")
        if isinstance(type_id, int) and app.type_ids:
            configured = ", ".join(f"{name}={tid}" for name, tid in app.type_ids.items())
            if isinstance(data_type, str) and data_type in app.type_ids:
                if app.type_ids[data_type] != type_id:
                    self.add(
                        ("type_id",),
                        f"type_id {type_id} differs from the application's type id for "
                        f"{data_type!r} ({app.type_ids[data_type]})",
                    )
            elif type_id not in app.type_ids.values():
                self.add(
                    ("type_id",),
                    f"type_id {type_id} is not configured for the application ({configured})",
                )
        container = self.data.get("default_container_id")
        if isinstance(container, int) and app.container_ids and container not in app.container_ids:
            known = ", ".join(str(c) for c in app.container_ids)
            self.add(
                ("default_container_id",),
                f"container {container} is not one of the application's containers ({known})",
            )

    def _check_expectations(self) -> None:
        fields = set(_as_dict(self.data.get("fields")))
        known = {"registration_id", "type_id", *fields}
        for index, item in enumerate(_as_list(self.data.get("expectations"))):
            kwargs = item.get("kwargs") if isinstance(item, dict) else None
            column = kwargs.get("column") if isinstance(kwargs, dict) else None
            if isinstance(column, str) and column not in known:
                self.add(
                    ("expectations", index, "kwargs", "column"),
                    f"column {column!r} is not a field of this mapping; expectations check "
                    f"payload fields: {', '.join(sorted(known))}",
                )

    def _check_regexes(self) -> None:
        from grip.mapping.transforms import check_regex  # pyarrow loads only when checking

        for path, pattern, replacement in self._regexes():
            reason = check_regex(pattern, replacement)
            if reason:
                self.add(path, f"not a valid regular expression (RE2 syntax): {reason}")

    def _regexes(self) -> Iterator[tuple[KeyPath, str, str | None]]:
        for index, item in enumerate(_as_list(self.data.get("filters"))):
            if isinstance(item, dict) and isinstance(item.get("matches"), str):
                yield ("filters", index, "matches"), item["matches"], None
        chains: list[tuple[KeyPath, Any]] = []
        key = self.data.get("key")
        if isinstance(key, dict):
            chains.append((("key", "transforms"), key.get("transforms")))
        for section in ("fields", "metadata"):
            for name, item in _as_dict(self.data.get(section)).items():
                if isinstance(item, dict):
                    chains.append(((section, name, "transforms"), item.get("transforms")))
        for path, chain in chains:
            for index, step in enumerate(_as_list(chain)):
                replace = step.get("replace") if isinstance(step, dict) else None
                if isinstance(replace, dict) and isinstance(replace.get("pattern"), str):
                    with_ = replace.get("with", "")
                    yield (*path, index, "replace", "pattern"), replace["pattern"], str(with_)


_ADMIN_MESSAGE = (
    "{value!r} contains 'admin': Grip locks every profile whose registration id contains the "
    "word, so no later update would reach it; choose another prefix"
)


def _columns_at(path: KeyPath, item: dict[str, Any]) -> Iterator[tuple[KeyPath, Any]]:
    if "column" in item:
        yield (*path, "column"), item["column"]
    for index, column in enumerate(_as_list(item.get("columns"))):
        yield (*path, "columns", index), column


def _unknown_reference(ref: str, fields: dict[str, Any]) -> str:
    names = ", ".join(sorted(fields)) or "none"
    return (
        f"template names {ref!r}, which is not a field of this mapping (fields: {names}); "
        f"write '{{source.{ref}}}' to read a source column"
    )


def _find_cycle(graph: dict[str, list[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in graph.get(node, []):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in graph:
        if node not in state and (found := visit(node)):
            return found
    return None


def _as_dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _field_order(model: MappingModel, templates: dict[str, Template]) -> tuple[str, ...]:
    order: list[str] = []
    placed: set[str] = set()

    def place(name: str) -> None:
        if name in placed:
            return
        placed.add(name)
        for ref in templates[name].fields if name in templates else ():
            place(ref)
        order.append(name)

    for name in model.fields:
        place(name)
    return tuple(order)


def _checked_fields(model: MappingModel) -> tuple[str, ...]:
    checked = {name for name, field in model.fields.items() if field.required}
    checked.update(name for name in ("email", "headline", "summary") if name in model.fields)
    for item in model.expectations:
        column = item.kwargs.get("column")
        if column in model.fields:
            checked.add(column)
    return tuple(sorted(checked))


def _columns_read(model: MappingModel, templates: dict[str, Template]) -> set[str]:
    columns: set[str] = set()
    key = model.key
    columns.update([key.column] if key.column else key.columns or [])
    columns.update(item.column for item in model.filters)
    for name, field in model.fields.items():
        if field.column:
            columns.add(field.column)
        if name in templates:
            columns.update(templates[name].columns)
    for meta in model.metadata.values():
        columns.update(_metadata_columns(meta))
    return columns


def _metadata_columns(meta: MetadataSpec) -> list[str]:
    if meta.column:
        return [meta.column]
    if meta.columns:
        return list(meta.columns)
    if meta.languages:
        return list(meta.languages.values())
    return []


def _fingerprint(spec: MappingSpec) -> str:
    content = {
        "mapping": spec.model.model_dump(mode="json", by_alias=True),
        "tables": {
            key: {"languages": list(table.languages), "entries": table.entries}
            for key, table in sorted(spec.tables.items())
        },
        "location_code": spec.location_code,
    }
    text = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
