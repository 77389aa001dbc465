"""Every problem a mapping file can have, each with the message that names file, key and line."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest

from grip.config import ApplicationSpec, load_integration
from grip.errors import ConfigError
from grip.mapping import check_integration, check_mapping, load_mapping

APPLICATION = ApplicationSpec(
    languages=["en-gb", "ru-ru"],
    type_ids={"visitor": 380, "exhibitor": 381},
    container_ids=[90001],
)
COLUMNS = ["reg_id", "first_name", "last_name", "email", "cats", "city", "status", "company"]
TABLE = "code,en-gb,ru-ru\nTO,Tour Operator,Туроператор\nLEI,Leisure,Многопрофильный\n"

HEAD = """\
data_type: visitor
type_id: 380
default_container_id: 90001
generate_relationships: 1
key: reg_id
"""
"""Five lines every case starts with; the case's own lines begin at line 6."""


def _write(folder: Path, body: str, table: str | None = TABLE) -> Path:
    path = folder / "mapping.yaml"
    path.write_text(HEAD + textwrap.dedent(body), encoding="utf-8")
    if table is not None:
        (folder / "table.csv").write_text(table, encoding="utf-8")
    return path


# (case id, YAML after HEAD, expected message: a regular expression matched against the error)
CASES = [
    ("unknown top-level key", "colour: red\n", r"mapping\.yaml:6: colour: unknown key"),
    (
        "unknown key inside a field",
        "fields:\n  email: {column: email, tranforms: [trim]}\n",
        r"mapping\.yaml:7: fields\.email\.tranforms: unknown key",
    ),
    (
        "unknown key inside metadata",
        "metadata:\n  cats: {column: cats, splt: ';'}\n",
        r"mapping\.yaml:7: metadata\.cats\.splt: unknown key",
    ),
    (
        "wrong type",
        "generate_relationships: yes please\n",
        r"mapping\.yaml:6: generate_relationships: Input should be 0 or 1",
    ),
    (
        "not an integer",
        "application_id: twelve\n",
        r"mapping\.yaml:6: application_id: Input should be a valid integer.*'twelve'",
    ),
    (
        "unknown Grip field",
        "fields:\n  nmae: first_name\n",
        r"mapping\.yaml:7: fields\.nmae: 'nmae' is not a Grip field \(name, first_name, .*\); "
        r"put event-specific values under 'metadata:'",
    ),
    (
        "registration_id among the fields",
        "fields:\n  registration_id: reg_id\n",
        r"fields\.registration_id: registration_id is built from 'key:'",
    ),
    (
        "location_code among the fields",
        "fields:\n  location_code: city\n",
        r"fields\.location_code: location_code is a top-level key of the mapping",
    ),
    (
        "unknown transform",
        "fields:\n  email:\n    column: email\n    transforms: [trim, trimm]\n",
        r"mapping\.yaml:9: fields\.email\.transforms\[1\]: unknown transform 'trimm'; bare names "
        r"are trim, collapse_spaces",
    ),
    (
        "transform with two keys",
        "fields:\n  email:\n    column: email\n    transforms:\n"
        "      - {trim: true, lower: true}\n",
        r"mapping\.yaml:10: fields\.email\.transforms\[0\]: give exactly one of trim, .* for a "
        r"transform \(found trim, lower\)",
    ),
    (
        "date format without directives",
        "fields:\n  summary:\n    column: city\n    transforms:\n"
        "      - date: {from: dd.mm.yyyy}\n",
        r"mapping\.yaml:10: fields\.summary\.transforms\[0\]\.date\.from: 'dd\.mm\.yyyy' is not a "
        r"date format; write one like '%d\.%m\.%Y'",
    ),
    (
        "value map that is empty",
        "fields:\n  summary:\n    column: city\n    transforms:\n      - map: {values: {}}\n",
        r"fields\.summary\.transforms\[0\]\.map\.values: Dictionary should have at least 1 item",
    ),
    (
        "value map with an unknown fallback",
        "fields:\n  summary:\n    column: city\n    transforms:\n"
        "      - map: {values: {a: b}, otherwise: guess}\n",
        r"fields\.summary\.transforms\[0\]\.map\.otherwise: Input should be 'reject', 'keep' or "
        r"'empty'",
    ),
    (
        "bad regular expression",
        "fields:\n  summary:\n    column: city\n    transforms:\n"
        "      - replace: {pattern: '([a-z'}\n",
        r"mapping\.yaml:10: fields\.summary\.transforms\[0\]\.replace\.pattern: not a valid "
        r"regular expression \(RE2 syntax\)",
    ),
    (
        "replacement naming a missing group",
        "fields:\n  summary:\n    column: city\n    transforms:\n"
        "      - replace: {pattern: '[a-z]+', with: '\\2'}\n",
        r"replace\.pattern: not a valid regular expression",
    ),
    (
        "phone country code",
        "fields:\n  phone_number:\n    column: city\n    transforms:\n"
        "      - phone: {country_code: plus44}\n",
        r"fields\.phone_number\.transforms\[0\]\.phone\.country_code: String should match pattern",
    ),
    (
        "field with two origins",
        "fields:\n  name: {column: first_name, template: '{first_name}'}\n",
        r"mapping\.yaml:7: fields\.name: give exactly one of column, const, template for a field "
        r"\(found column, template\)",
    ),
    (
        "field without origin",
        "fields:\n  name: {transforms: [trim]}\n",
        r"fields\.name: give exactly one of column, const, template for a field$",
    ),
    (
        "column the source lacks",
        "fields:\n  email: {column: emial}\n",
        r"mapping\.yaml:7: fields\.email\.column: column 'emial' is not in the source \(did you "
        r"mean 'email'\?\); it has: reg_id, first_name",
    ),
    (
        "key column the source lacks",
        "fields:\n  email: email\n",
        None,  # the key (reg_id) exists: this case must load
    ),
    (
        "filter column the source lacks",
        "filters:\n  - {name: cancelled, column: state, in: [cancelled]}\n",
        r"mapping\.yaml:7: filters\[0\]\.column: column 'state' is not in the source \(did you "
        r"mean 'status'\?\)",
    ),
    (
        "template column the source lacks",
        "fields:\n  location: {template: '{source.town}, {source.city}'}\n",
        r"mapping\.yaml:7: fields\.location\.template: column 'town' is not in the source",
    ),
    (
        "per-language column the source lacks",
        "metadata:\n  org:\n    languages: {en-gb: company, ru-ru: company_ru}\n",
        r"mapping\.yaml:8: metadata\.org\.languages\.ru-ru: column 'company_ru' is not in the "
        r"source \(did you mean 'company'\?\)",
    ),
    (
        "template naming an unknown field",
        "fields:\n  first_name: first_name\n  name: {template: '{first_nme} x'}\n",
        r"mapping\.yaml:8: fields\.name\.template: template names 'first_nme', which is not a "
        r"field of this mapping \(fields: first_name, name\); write '\{source\.first_nme\}' to "
        r"read a source column",
    ),
    (
        "template with an unpaired brace",
        "fields:\n  name: {template: '{first_name'}\n",
        r"fields\.name\.template: template '\{first_name' has an unpaired '\{'; write '\{\{' for",
    ),
    (
        "template naming itself",
        "fields:\n  name: {template: '{name}!'}\n",
        r"fields\.name\.template: template of 'name' names itself",
    ),
    (
        "templates in a loop",
        "fields:\n  name: {template: '{headline}'}\n  headline: {template: '{name}'}\n",
        r"fields\.name\.template: templates name each other in a loop: name -> headline -> name",
    ),
    (
        "template with an unknown transform",
        "fields:\n  first_name: first_name\n  name: {template: '{first_name|shout}'}\n",
        r"fields\.name\.template: template '\{first_name\|shout\}': 'shout' is not a transform "
        r"usable in a template",
    ),
    (
        "template without placeholders",
        "fields:\n  name: {template: 'Anonymous'}\n",
        r"fields\.name\.template: template 'Anonymous' names no field; use 'const:' for fixed text",
    ),
    (
        "language not enabled",
        "metadata:\n  cats: {column: cats, language: de-de}\n",
        r"mapping\.yaml:7: metadata\.cats\.language: language 'de-de' is not enabled for the "
        r"application; enabled: en-gb, ru-ru",
    ),
    (
        "language written in upper case",
        "metadata:\n  cats: {column: cats, language: EN-GB}\n",
        r"metadata\.cats\.language: language code 'EN-GB' must be written lower case",
    ),
    (
        "per-language column in a language not enabled",
        "metadata:\n  org:\n    languages: {en-gb: company, fr-fr: company}\n",
        r"mapping\.yaml:8: metadata\.org\.languages\.fr-fr: language 'fr-fr' is not enabled",
    ),
    (
        "location code not enabled",
        "location_code: fr-FR\n",
        r"mapping\.yaml:6: location_code: language 'fr-FR' is not enabled for the application",
    ),
    (
        "metadata key not an identifier",
        "metadata:\n  Product Cats: cats\n",
        r"mapping\.yaml:7: metadata\.Product Cats: metadata key 'Product Cats' must be lower case",
    ),
    (
        "metadata with two origins",
        "metadata:\n  cats: {column: cats, columns: [cats, city]}\n",
        r"metadata\.cats: give exactly one of column, columns, languages, const for a metadata "
        r"value \(found column, columns\)",
    ),
    (
        "split of several columns",
        "metadata:\n  cats: {columns: [cats, city], split: ';'}\n",
        r"metadata\.cats: 'split' applies to 'column' or 'languages', not to 'columns'",
    ),
    (
        "translation of a constant",
        "metadata:\n  cats: {const: TO, translate: table.csv}\n",
        r"metadata\.cats: 'translate' applies to 'column', not to 'const'",
    ),
    (
        "unknown without a translation",
        "metadata:\n  cats: {column: cats, unknown: keep}\n",
        r"metadata\.cats: 'output_languages' and 'unknown' only apply with 'translate'",
    ),
    (
        "translation table missing",
        "metadata:\n  cats: {column: cats, translate: tabel.csv}\n",
        r"mapping\.yaml:7: metadata\.cats\.translate: translation table .*tabel\.csv does not "
        r"exist",
    ),
    (
        "translation table of another kind",
        "metadata:\n  cats: {column: cats, translate: table.xlsx}\n",
        r"metadata\.cats\.translate: translation table 'table\.xlsx' must be a \.csv, \.yaml or "
        r"\.yml file",
    ),
    (
        "translation table of the wrong type",
        "metadata:\n  cats: {column: cats, translate: 5}\n",
        r"metadata\.cats\.translate: translate must be a table file",
    ),
    (
        "output language the table lacks",
        "metadata:\n  cats:\n    {column: cats, translate: table.csv, output_languages: [en-us]}\n",
        r"metadata\.cats\.output_languages: the table table\.csv has no column for en-us",
    ),
    (
        "filter without a test",
        "filters:\n  - {name: cancelled, column: status}\n",
        r"mapping\.yaml:7: filters\[0\]: give exactly one of in, not_in, matches, empty for a "
        r"filter",
    ),
    (
        "filter names repeated",
        "filters:\n  - {name: odd, column: status, in: [x]}\n"
        "  - {name: odd, column: city, empty: true}\n",
        r"mapping\.yaml:8: filters\[1\]\.name: filter name 'odd' is used twice "
        r"\(also filters\[0\]\)",
    ),
    (
        "filter name with spaces",
        "filters:\n  - {name: Test rows, column: status, in: [x]}\n",
        r"filters\[0\]\.name: filter name 'Test rows' must be lower case letters",
    ),
    (
        "filter with a bad regular expression",
        "filters:\n  - {name: tests, column: status, matches: '(?<=x)y'}\n",
        r"mapping\.yaml:7: filters\[0\]\.matches: not a valid regular expression",
    ),
    ("no fields at all", "fields: {}\n", None),
    (
        "expectation on an unknown column",
        "expectations:\n  - {type: expect_column_values_to_not_be_null, kwargs: {column: fax}}\n",
        r"mapping\.yaml:7: expectations\[0\]\.kwargs\.column: column 'fax' is not a field of this "
        r"mapping; expectations check payload fields: registration_id, type_id",
    ),
    (
        "expectation type not in snake case",
        "expectations:\n  - {type: ExpectColumnValuesToNotBeNull}\n",
        r"mapping\.yaml:7: expectations\[0\]\.type: String should match pattern",
    ),
]


@pytest.mark.parametrize(("body", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_mapping_problem_message(tmp_path: Path, body: str, expected: str | None) -> None:
    path = _write(tmp_path, body)
    if expected is None:
        assert load_mapping(path, APPLICATION, COLUMNS).data_type == "visitor"
        return
    with pytest.raises(ConfigError, match=expected):
        load_mapping(path, APPLICATION, COLUMNS)


APPLICATION_CASES = [
    (
        "type id not configured",
        "type_id: 999\n",
        "speaker",
        r"mapping\.yaml:2: type_id: type_id 999 is not configured for the application "
        r"\(visitor=380, exhibitor=381\)",
    ),
    (
        "type id of another data type",
        "type_id: 381\n",
        "visitor",
        r"mapping\.yaml:2: type_id: type_id 381 differs from the application's type id for "
        r"'visitor' \(380\)",
    ),
    (
        "container not configured",
        "default_container_id: 5\n",
        "visitor",
        r"mapping\.yaml:3: default_container_id: container 5 is not one of the application's "
        r"containers \(90001\)",
    ),
    (
        "admin in the key prefix",
        "key: {column: reg_id, prefix: ADMIN-}\n",
        "visitor",
        r"mapping\.yaml:5: key\.prefix: 'ADMIN-' contains 'admin': Grip locks every profile",
    ),
    (
        "key from two columns that are missing",
        "key: {columns: [event, reg_no]}\n",
        "visitor",
        r"key\.columns\[0\]: column 'event' is not in the source.*\n.*key\.columns\[1\]: column "
        r"'reg_no' is not in the source",
    ),
    (
        "key from one column in a list",
        "key: {columns: [reg_id]}\n",
        "visitor",
        r"mapping\.yaml:5: key\.columns: List should have at least 2 items",
    ),
]


@pytest.mark.parametrize(
    ("replacement", "data_type", "expected"),
    [c[1:] for c in APPLICATION_CASES],
    ids=[c[0] for c in APPLICATION_CASES],
)
def test_head_problem_message(
    tmp_path: Path, replacement: str, data_type: str, expected: str
) -> None:
    key = replacement.split(":", 1)[0]
    head = "".join(
        replacement if line.startswith(key + ":") else line
        for line in HEAD.replace("visitor", data_type).splitlines(keepends=True)
    )
    path = tmp_path / "mapping.yaml"
    path.write_text(head, encoding="utf-8")
    with pytest.raises(ConfigError, match=expected):
        load_mapping(path, APPLICATION, COLUMNS)


TABLE_CASES = [
    (
        "header without code",
        "id,en-gb\nTO,Tour\n",
        r"table\.csv:1: the first column must be 'code'",
    ),
    (
        "upper-case language column",
        "code,EN-GB\nTO,Tour\n",
        r"table\.csv:1: EN-GB: language columns are lower case codes like 'en-gb'",
    ),
    (
        "code listed twice",
        "code,en-gb\nTO,Tour\nto,Tours\n",
        r"table\.csv:3: to: code is listed twice",
    ),
    (
        "too many cells",
        "code,en-gb\nTO,Tour,extra\n",
        r"table\.csv:2: TO: 3 cells, the header has 2",
    ),
    (
        "language not enabled",
        "code,en-gb,de-de\nTO,Tour,Reiseveranstalter\n",
        r"mapping\.yaml:7: metadata\.cats\.translate: language 'de-de' is not enabled for the "
        r"application \(a column of table\.csv; choose the languages to send with "
        r"'output_languages'\)",
    ),
    ("empty file", "", r"table\.csv:1: the first column must be 'code'"),
]


@pytest.mark.parametrize(
    ("table", "expected"), [c[1:] for c in TABLE_CASES], ids=[c[0] for c in TABLE_CASES]
)
def test_translation_table_problem_message(tmp_path: Path, table: str, expected: str) -> None:
    path = _write(tmp_path, "metadata:\n  cats: {column: cats, translate: table.csv}\n", table)
    with pytest.raises(ConfigError, match=expected):
        load_mapping(path, APPLICATION, COLUMNS)


YAML_TABLE_CASES = [
    ("not a mapping", "- TO\n- LEI\n", r"codes\.yaml:1: expected code: \{language: text\} entries"),
    ("texts not a mapping", "TO: Tour\n", r"codes\.yaml:1: TO: expected \{language: text\} under"),
    (
        "upper-case language",
        "TO:\n  EN-GB: Tour\n",
        r"codes\.yaml:2: TO\.EN-GB: language codes are lower case like 'en-gb'",
    ),
    ("not YAML", "TO: [unclosed\n", r"codes\.yaml:\d+: not valid YAML"),
]


@pytest.mark.parametrize(
    ("table", "expected"),
    [c[1:] for c in YAML_TABLE_CASES],
    ids=[c[0] for c in YAML_TABLE_CASES],
)
def test_yaml_translation_table_problem_message(tmp_path: Path, table: str, expected: str) -> None:
    (tmp_path / "codes.yaml").write_text(table, encoding="utf-8")
    path = _write(tmp_path, "metadata:\n  cats: {column: cats, translate: codes.yaml}\n", None)
    with pytest.raises(ConfigError, match=expected):
        load_mapping(path, APPLICATION, COLUMNS)


FILE_CASES = [
    ("not YAML", "data_type: [visitor\n", r"mapping\.yaml:\d+: not valid YAML"),
    ("a list at the top", "- visitor\n", r"mapping\.yaml:1: expected a mapping of keys at the top"),
    ("not UTF-8", b"data_type: v\xe9\n", r"mapping\.yaml: not UTF-8 text \(byte 12\)"),
]


@pytest.mark.parametrize(
    ("content", "expected"), [c[1:] for c in FILE_CASES], ids=[c[0] for c in FILE_CASES]
)
def test_unreadable_mapping_file(tmp_path: Path, content: str | bytes, expected: str) -> None:
    path = tmp_path / "mapping.yaml"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    with pytest.raises(ConfigError, match=expected):
        load_mapping(path)


def test_missing_mapping_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nowhere\.yaml: cannot read the file"):
        load_mapping(tmp_path / "nowhere.yaml")


def test_missing_required_keys_are_named(tmp_path: Path) -> None:
    path = tmp_path / "mapping.yaml"
    path.write_text("data_type: visitor\n", encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_mapping(path)
    message = str(caught.value)
    for key in ("type_id", "default_container_id", "key"):
        assert f"{key}: required key is missing" in message


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    """Structural and semantic problems of one file come together, sorted by line."""
    path = _write(
        tmp_path,
        """\
        fields:
          email: {column: emial, transforms: [trimm]}
          nmae: first_name
        metadata:
          cats: {column: cats, language: de-de}
        """,
    )
    spec, problems = check_mapping(path, APPLICATION, COLUMNS)
    assert spec is None
    texts = [str(problem) for problem in problems]
    assert len(texts) == 4, texts
    assert re.search(
        r"mapping\.yaml:7: fields\.email\.transforms\[0\]: unknown transform", texts[0]
    )
    assert re.search(r"mapping\.yaml:7: fields\.email\.column: column 'emial'", " ".join(texts))
    assert re.search(r"mapping\.yaml:8: fields\.nmae: 'nmae' is not a Grip field", texts[2])
    assert re.search(r"mapping\.yaml:10: metadata\.cats\.language: language 'de-de'", texts[3])
    with pytest.raises(ConfigError, match=r"^4 problems:\n  .*mapping\.yaml:7"):
        load_mapping(path, APPLICATION, COLUMNS)


def test_without_columns_and_application_only_the_file_itself_is_checked(tmp_path: Path) -> None:
    path = _write(tmp_path, "location_code: fr-FR\nfields:\n  email: {column: emial}\n")
    spec = load_mapping(path)
    assert spec.location_code == "fr-FR"
    with pytest.raises(ConfigError, match="language 'fr-FR' is not enabled"):
        load_mapping(path, APPLICATION)


def _integration(tmp_path: Path, visitor: str, exhibitor: str, type_ids: bool = True) -> Path:
    (tmp_path / "visitor.yaml").write_text(visitor, encoding="utf-8")
    (tmp_path / "exhibitor.yaml").write_text(exhibitor, encoding="utf-8")
    path = tmp_path / "event.yaml"
    path.write_text(
        textwrap.dedent(
            """\
            name: event
            application:
              languages: [en-gb, ru-ru]
              TYPE_IDS
            data_types:
              visitor:
                mapping: visitor.yaml
                source: {kind: file, path: drop, pattern: "v*.csv"}
              exhibitor:
                mapping: exhibitor.yaml
                source: {kind: file, path: drop, pattern: "e*.csv"}
            """
        ).replace("TYPE_IDS", "type_ids: {visitor: 380, exhibitor: 381}" if type_ids else ""),
        encoding="utf-8",
    )
    return path


def test_check_integration_reports_every_file_at_once(tmp_path: Path) -> None:
    visitor = HEAD + "fields:\n  email: {column: emial}\n"
    exhibitor = HEAD.replace("type_id: 380", "type_id: 381") + "colour: red\n"
    integration = load_integration(_integration(tmp_path, visitor, exhibitor))
    problems = check_integration(integration, {"visitor": COLUMNS})
    texts = [str(problem) for problem in problems]
    assert len(texts) == 3, texts
    assert re.search(r"visitor\.yaml:7: fields\.email\.column: column 'emial'", texts[0])
    # the exhibitor file says data_type visitor (its HEAD) with the exhibitor's type id
    assert re.search(r"exhibitor\.yaml:2: type_id: type_id 381 differs", texts[1])
    assert re.search(r"exhibitor\.yaml:6: colour: unknown key", texts[2])


def test_check_integration_names_mismatched_data_types_and_shared_type_ids(
    tmp_path: Path,
) -> None:
    visitor = HEAD
    exhibitor = HEAD.replace("data_type: visitor", "data_type: exhibitor")
    integration = load_integration(_integration(tmp_path, visitor, exhibitor, type_ids=False))
    texts = [str(problem) for problem in check_integration(integration)]
    assert len(texts) == 1, texts
    assert re.search(
        r"exhibitor\.yaml:2: type_id: type_id 380 is also the type of 'visitor'", texts[0]
    )

    wrong_name = HEAD.replace("data_type: visitor", "data_type: visitors")
    integration = load_integration(_integration(tmp_path, wrong_name, exhibitor, type_ids=False))
    texts = [str(problem) for problem in check_integration(integration)]
    assert re.search(
        r"visitor\.yaml:1: data_type: data_type 'visitors' differs from the integration's data "
        r"type 'visitor'",
        texts[0],
    )
