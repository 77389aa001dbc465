"""Typed model of a mapping file (include/mappings/<event>/<data type>.yaml), checked strictly."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

GRIP_FIELDS = (
    "name",
    "first_name",
    "last_name",
    "email",
    "phone_number",
    "job_title",
    "company_name",
    "headline",
    "summary",
    "location",
    "picture_url",
)
"""Top-level payload fields a mapping may fill under ``fields:``.

``registration_id`` comes from ``key:``, ``location_code`` and the fixed fields (``type_id`` ...)
are top-level keys of the mapping, and everything event-specific goes under ``metadata:``.
"""

SIMPLE_TRANSFORMS = ("trim", "collapse_spaces", "lower", "upper", "title", "email", "phone")
"""Transforms that take no settings: they can be written as a bare name, also in templates."""

TRANSFORMS = (*SIMPLE_TRANSFORMS, "date", "map", "replace")

IDENTIFIER = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_LANGUAGE = re.compile(r"^[a-z]{2,3}(-[a-z0-9]{2,8})*$")
_LANGUAGE_ANY_CASE = re.compile(r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


def _one_of(model: BaseModel, names: tuple[str, ...], what: str) -> str:
    given = [name.rstrip("_") for name in names if getattr(model, name) is not None]
    if len(given) != 1:
        listed = ", ".join(name.rstrip("_") for name in names)
        found = f" (found {', '.join(given)})" if given else ""
        raise ValueError(f"give exactly one of {listed} for {what}{found}")
    return given[0]


def _check_language(code: str) -> str:
    if not _LANGUAGE.match(code):
        raise ValueError(
            f"language code {code!r} must be written lower case, like 'en-gb' or 'ru-ru'"
        )
    return code


class DateArgs(_Strict):
    """``date:`` settings: which formats the source uses and which one Grip receives."""

    from_: list[str] = Field(alias="from", min_length=1)
    to: str = "%Y-%m-%d"

    @field_validator("from_", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("from_", "to")
    @classmethod
    def _strftime_format(cls, value: Any) -> Any:
        for fmt in [value] if isinstance(value, str) else value:
            if "%" not in fmt:
                raise ValueError(f"{fmt!r} is not a date format; write one like '%d.%m.%Y'")
        return value


class MapArgs(_Strict):
    """``map:`` settings: a table from source code to label."""

    values: dict[str, str] = Field(min_length=1)
    otherwise: Literal["reject", "keep", "empty"] = "reject"
    ignore_case: bool = True

    @field_validator("values", mode="before")
    @classmethod
    def _text_keys(cls, value: Any) -> Any:
        # YAML reads codes like 1 or yes as numbers and booleans; codes compare as text
        if isinstance(value, dict):
            return {_as_text(k): _as_text(v) for k, v in value.items()}
        return value


class ReplaceArgs(_Strict):
    """``replace:`` settings: a regular expression (RE2 syntax) and its replacement."""

    pattern: str = Field(min_length=1)
    with_: str = Field(default="", alias="with")


class PhoneArgs(_Strict):
    """``phone:`` settings: the country code to put before numbers written without one."""

    country_code: str | None = Field(default=None, pattern=r"^\+?[0-9]{1,4}$")


class Step(_Strict):
    """One transform of a chain; exactly one key is set.

    Written as a bare name (``trim``) or as a one-key mapping (``date: {from: '%d.%m.%Y'}``).
    """

    trim: bool | None = None
    collapse_spaces: bool | None = None
    lower: bool | None = None
    upper: bool | None = None
    title: bool | None = None
    email: bool | None = None
    phone: PhoneArgs | None = None
    date: DateArgs | None = None
    map: MapArgs | None = None
    replace: ReplaceArgs | None = None

    @model_validator(mode="before")
    @classmethod
    def _bare_name(cls, value: Any) -> Any:
        if isinstance(value, str):
            if value not in SIMPLE_TRANSFORMS:
                known = ", ".join(SIMPLE_TRANSFORMS)
                raise ValueError(
                    f"unknown transform {value!r}; bare names are {known} "
                    "(date, map and replace need settings, e.g. 'date: {from: \"%d.%m.%Y\"}')"
                )
            return {value: {} if value == "phone" else True}
        if isinstance(value, dict) and value.get("phone") in (True, None) and "phone" in value:
            return {**value, "phone": {}}
        return value

    @model_validator(mode="after")
    def _exactly_one(self) -> Step:
        _one_of(self, TRANSFORMS, "a transform")
        return self

    @property
    def kind(self) -> str:
        """The transform's name (the one key that is set)."""
        return _one_of(self, TRANSFORMS, "a transform")


class _ColumnShorthand(_Strict):
    """A spec that may be written as a bare column name; its ``const`` is kept as text."""

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        if isinstance(value, str):
            return {"column": value}
        if isinstance(value, dict) and "const" in value:
            return {**value, "const": _as_text(value["const"])}
        return value


class FieldSpec(_ColumnShorthand):
    """How one top-level payload field is filled: a column, a constant or a template.

    A bare string is short for ``{column: <string>}``.
    """

    column: str | None = None
    const: str | None = None
    template: str | None = None
    transforms: list[Step] = Field(default_factory=list)
    default: str | None = None
    required: bool = False

    @model_validator(mode="after")
    def _one_origin(self) -> FieldSpec:
        _one_of(self, ("column", "const", "template"), "a field")
        return self


class MetadataSpec(_ColumnShorthand):
    """One ``metadata_raw`` key: where its values come from and in which languages.

    Values come from one ``column`` (split into several with ``split``), several ``columns``
    (one value each), per-language columns (``languages: {en-gb: col, ru-ru: col_ru}``) or a
    ``const``. Single-language values are written in ``language`` (default: the mapping's
    location code, lower case). ``translate`` turns codes into texts in several languages,
    from a CSV or YAML table (a path next to the mapping) or an inline table.
    """

    column: str | None = None
    columns: list[str] | None = Field(default=None, min_length=1)
    languages: dict[str, str] | None = Field(default=None, min_length=1)
    const: str | None = None
    language: str | None = None
    split: str | None = Field(default=None, min_length=1)
    transforms: list[Step] = Field(default_factory=list)
    translate: Any = None
    output_languages: list[str] | None = Field(default=None, min_length=1)
    unknown: Literal["reject", "keep", "drop"] = "reject"
    required: bool = False

    @field_validator("translate")
    @classmethod
    def _table(cls, value: Any) -> Any:
        if value is None or isinstance(value, str):
            return value
        if isinstance(value, dict) and all(isinstance(v, dict) for v in value.values()):
            return {
                _as_text(code): {lang: _as_text(text) for lang, text in texts.items()}
                for code, texts in value.items()
            }
        raise ValueError(
            "translate must be a table file (CSV or YAML, next to the mapping) or an inline "
            "table of code: {language: text}"
        )

    @field_validator("language")
    @classmethod
    def _language(cls, value: str | None) -> str | None:
        return None if value is None else _check_language(value)

    @field_validator("languages")
    @classmethod
    def _languages(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        for code in value or {}:
            _check_language(code)
        return value

    @field_validator("output_languages")
    @classmethod
    def _output_languages(cls, value: list[str] | None) -> list[str] | None:
        for code in value or []:
            _check_language(code)
        return value

    @model_validator(mode="after")
    def _consistent(self) -> MetadataSpec:
        origin = _one_of(self, ("column", "columns", "languages", "const"), "a metadata value")
        if origin == "languages" and self.language is not None:
            raise ValueError("'language' does not apply to per-language columns ('languages')")
        if origin in ("languages", "columns", "const") and self.translate is not None:
            raise ValueError(f"'translate' applies to 'column', not to {origin!r}")
        if self.translate is None and (self.output_languages or self.unknown != "reject"):
            raise ValueError("'output_languages' and 'unknown' only apply with 'translate'")
        if self.split is not None and origin in ("columns", "const"):
            raise ValueError("'split' applies to 'column' or 'languages', not to " + repr(origin))
        return self

    @property
    def origin(self) -> str:
        """Which of column, columns, languages or const the values come from."""
        return _one_of(self, ("column", "columns", "languages", "const"), "a metadata value")


class KeySpec(_Strict):
    """How ``registration_id`` is built: one column or several joined, stable run to run.

    A bare string is short for ``{column: <string>}``.
    """

    column: str | None = None
    columns: list[str] | None = Field(default=None, min_length=2)
    separator: str = "-"
    prefix: str = ""
    transforms: list[Step] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        return {"column": value} if isinstance(value, str) else value

    @model_validator(mode="after")
    def _one_origin(self) -> KeySpec:
        _one_of(self, ("column", "columns"), "the key")
        return self


class FilterSpec(_Strict):
    """A row filter: rows it matches are left out of the run and counted under its name.

    ``in`` and ``not_in`` compare the trimmed value without regard to case; ``matches`` is a
    regular expression (RE2 syntax) searched in the value; ``empty: true`` matches empty values.
    """

    name: str
    column: str
    in_: list[str] | None = Field(default=None, alias="in", min_length=1)
    not_in: list[str] | None = Field(default=None, min_length=1)
    matches: str | None = Field(default=None, min_length=1)
    empty: bool | None = None

    @field_validator("name")
    @classmethod
    def _identifier(cls, value: str) -> str:
        if not IDENTIFIER.match(value):
            raise ValueError(f"filter name {value!r} must be lower case letters, digits and '_'")
        return value

    @field_validator("in_", "not_in", mode="before")
    @classmethod
    def _text_items(cls, value: Any) -> Any:
        return [_as_text(item) for item in value] if isinstance(value, list) else value

    @model_validator(mode="after")
    def _one_test(self) -> FilterSpec:
        _one_of(
            self, ("in_", "not_in", "matches", "empty"), "a filter (in, not_in, matches, empty)"
        )
        return self


class ExpectationSpec(_Strict):
    """An extra Great Expectations expectation the mapping adds to its suite.

    ``type`` is the snake_case name (``expect_column_values_to_match_regex``), ``kwargs`` its
    arguments (``column`` names a payload field or ``registration_id``), ``rule`` the name that
    rejects carry (default: the expectation's type).
    """

    type: str = Field(pattern=r"^expect_[a-z0-9_]+$")
    kwargs: dict[str, Any] = Field(default_factory=dict)
    rule: str | None = None

    @field_validator("rule")
    @classmethod
    def _identifier(cls, value: str | None) -> str | None:
        if value is not None and not IDENTIFIER.match(value):
            raise ValueError(f"rule {value!r} must be lower case letters, digits and '_'")
        return value


class MappingModel(_Strict):
    """A whole mapping file: the fixed Grip fields, the key, filters, fields and metadata."""

    data_type: str
    type_id: int = Field(gt=0)
    default_container_id: int = Field(gt=0)
    generate_relationships: Literal[0, 1] = 0
    new_event_join_type: str | None = None
    application_id: int | None = Field(default=None, gt=0)
    location_code: str | None = None
    key: KeySpec
    filters: list[FilterSpec] = Field(default_factory=list)
    fields: dict[str, FieldSpec] = Field(default_factory=dict)
    metadata: dict[str, MetadataSpec] = Field(default_factory=dict)
    expectations: list[ExpectationSpec] = Field(default_factory=list)
    send_empty: bool = False

    @field_validator("data_type")
    @classmethod
    def _data_type(cls, value: str) -> str:
        if not IDENTIFIER.match(value):
            raise ValueError(f"data_type {value!r} must be lower case letters, digits and '_'")
        return value

    @field_validator("location_code")
    @classmethod
    def _location_code(cls, value: str | None) -> str | None:
        if value is not None and not _LANGUAGE_ANY_CASE.match(value):
            raise ValueError(f"location_code {value!r} is not a language code like 'en-gb'")
        return value

    @field_validator("new_event_join_type")
    @classmethod
    def _join_type(cls, value: str | None) -> str | None:
        if value is not None and not IDENTIFIER.match(value):
            raise ValueError(f"new_event_join_type {value!r} must look like 'join_and_patch'")
        return value


def unknown_field_message(name: str) -> str:
    """Say why ``name`` cannot be a key under ``fields:`` and what to write instead."""
    if name == "registration_id":
        return "registration_id is built from 'key:', not listed under 'fields:'"
    if name in ("location_code", "type_id", "default_container_id", "application_id"):
        return f"{name} is a top-level key of the mapping, not a field"
    known = ", ".join(GRIP_FIELDS)
    return f"{name!r} is not a Grip field ({known}); put event-specific values under 'metadata:'"


def _as_text(value: Any) -> Any:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return value
