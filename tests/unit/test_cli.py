"""The command line: preview, check and profile on real files, in process and as ``-m grip``."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from grip.cli import COMMANDS, main

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "include" / "integrations" / "demo.yaml"
GOLDEN = Path(__file__).resolve().parent / "golden"
MAPPINGS = ROOT / "include" / "mappings" / "demo"


def _drop_integration(tmp_path: Path, mapping_extra: str = "") -> Path:
    """An integration whose exhibitors come from a local drop folder (the seed's person)."""
    drop = tmp_path / "drop"
    drop.mkdir()
    shutil.copy(GOLDEN / "seed_exhibitor_row.csv", drop / "exhibitors_2026-03-02.csv")
    mapping = tmp_path / "exhibitor.yaml"
    mapping.write_text(
        (MAPPINGS / "exhibitor.yaml")
        .read_text(encoding="utf-8")
        .replace("product_categories.csv", str(MAPPINGS / "product_categories.csv"))
        + mapping_extra,
        encoding="utf-8",
    )
    path = tmp_path / "event.yaml"
    path.write_text(
        textwrap.dedent(
            """\
            name: event
            application:
              languages: [en-gb, ru-ru]
              type_ids: {exhibitor: 381}
            data_types:
              exhibitor:
                mapping: exhibitor.yaml
                source: {kind: file, path: drop, pattern: "exhibitors_*.csv"}
            """
        ),
        encoding="utf-8",
    )
    return path


def test_every_command_is_registered() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "grip", "--help"],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
        cwd=ROOT,
    )
    for command in ("preview", "check", "profile"):
        assert command in COMMANDS
        assert command in result.stdout


def test_check_the_demo_integration(capsys: pytest.CaptureFixture[str]) -> None:
    columns = f"visitor={GOLDEN / 'demo_visitor_rows.csv'}"
    assert main(["check", str(DEMO), "--columns", columns]) == 0
    out = capsys.readouterr().out
    assert "visitor.yaml loads against the sample's columns (type_id 380" in out
    assert "representative.yaml loads (type_id 382" in out
    assert "demo: no problems" in out


def test_check_reports_every_problem_and_fails(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _drop_integration(
        tmp_path,
        "expectations:\n  - {type: expect_column_values_to_sparkle, kwargs: {column: email}}\n",
    )
    mapping = tmp_path / "exhibitor.yaml"
    text = mapping.read_text(encoding="utf-8").replace("{column: email,", "{column: e_mail,")
    mapping.write_text(text.replace("type_id: 381", "type_id: 999"), encoding="utf-8")
    sample = tmp_path / "drop" / "exhibitors_2026-03-02.csv"
    code = main(["check", str(path), "--columns", f"exhibitor={sample}", "--suites"])
    out = capsys.readouterr().out
    assert code == 1
    assert "✗ exhibitor" in out
    assert "2 problem(s)" in out
    assert "exhibitor.yaml:3: type_id: type_id 999 differs from the application's type id" in out
    assert (
        "fields.email.column: column 'e_mail' is not in the source (did you mean 'email'?)" in out
    )


def test_check_builds_the_suites_on_request(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _drop_integration(
        tmp_path,
        "expectations:\n  - {type: expect_column_values_to_sparkle, kwargs: {column: email}}\n",
    )
    assert main(["check", str(path)]) == 0
    capsys.readouterr()
    assert main(["check", str(path), "--suites"]) == 1
    out = capsys.readouterr().out
    assert "exhibitor.yaml:" in out
    assert "expectations[0]: the expectation cannot be built: great_expectations has no" in out


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--columns", "visitor"], r"--columns 'visitor': write TYPE=FILE"),
        (["--columns", "speaker=x.csv"], r"no data type 'speaker'; the integration has visitor"),
    ],
)
def test_check_argument_errors(
    arguments: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["check", str(DEMO), *arguments]) == 1
    assert message.replace("\\", "") in capsys.readouterr().err.replace("\\", "")


def test_preview_reads_the_source_and_prints_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _drop_integration(tmp_path)
    assert main(["preview", str(path), "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    seed = json.loads((GOLDEN / "seed_exhibitor_payload.json").read_text(encoding="utf-8"))
    assert document["data_type"] == "exhibitor"
    assert document["rows_read"] == 1
    assert document["validated"] is True
    assert document["rejects"] == []
    (item,) = document["payloads"]
    assert item["source_row"] == 1
    assert {**item["payload"], "type_id": seed["type_id"]} == seed


def test_preview_of_a_local_file_with_rejects_and_filters(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "200")  # rich wraps table cells to the terminal's width
    rows = (GOLDEN / "demo_visitor_rows.csv").read_text(encoding="utf-8")
    broken = rows.replace("james@example.org", "james-at-example.org")
    sample = tmp_path / "visitors.csv"
    sample.write_text(broken, encoding="utf-8")
    assert main(["preview", str(DEMO), "visitor", "--file", str(sample), "-n", "3"]) == 0
    out = capsys.readouterr().out
    assert "3 rows read from file" in out
    assert "1 payloads, 1 rejected, filtered: cancelled 1" in out
    assert '"registration_id": "V0000017"' in out
    assert "Rejects" in out
    assert "email_format: email: 'james-at-example.org' is not an e-mail" in out


def test_preview_without_validation(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rows = (GOLDEN / "demo_visitor_rows.csv").read_text(encoding="utf-8")
    sample = tmp_path / "visitors.csv"
    sample.write_text(rows.replace("21.03.2026", "21/03/2026"), encoding="utf-8")
    args = ["preview", str(DEMO), "visitor", "--file", str(sample), "--no-validate", "--json"]
    assert main(args) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["validated"] is False
    assert [item["source_row"] for item in document["payloads"]] == [2]
    assert document["rejects"] == [
        {
            "source_row": 1,
            "registration_id": "V0000017",
            "reasons": [
                "date_format: metadata_raw.registration_date: '21/03/2026' does not match "
                "%d.%m.%Y or %Y-%m-%d"
            ],
        }
    ]


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ([], r"name the data type, one of visitor, exhibitor, representative"),
        (["speaker"], r"no data type 'speaker'; the integration has visitor"),
        (["exhibitor", "--url", "sqlite://"], r"--url applies to SQL sources only"),
    ],
)
def test_preview_argument_errors(
    arguments: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["preview", str(DEMO), *arguments]) == 1
    assert message in capsys.readouterr().err


def test_preview_of_a_file_lacking_columns(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sample = tmp_path / "visitors.csv"
    sample.write_text("reg_id,first_name\nV1,Anna\n", encoding="utf-8")
    assert main(["preview", str(DEMO), "visitor", "--file", str(sample)]) == 1
    assert "fields.email.column: column 'email' is not in the source" in capsys.readouterr().err


def test_profile(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sample = tmp_path / "sample.csv"
    sample.write_text("id,city,note\n1,Москва,\n2,Paris, \n3,Москва,x\n4,,\n", encoding="utf-8")
    assert main(["profile", str(sample), "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["rows"] == 4
    by_name = {item["column"]: item for item in document["columns"]}
    assert by_name["id"] == {
        "column": "id", "filled": 4, "fill_rate": 1.0, "distinct": 4, "unique": True,
        "max_length": 1, "examples": ["1", "2", "3"],
    }  # fmt: skip
    assert by_name["city"]["fill_rate"] == 0.75
    assert by_name["city"]["examples"][0] == "Москва"
    assert by_name["city"]["unique"] is False
    assert by_name["note"]["filled"] == 1

    assert main(["profile", str(sample)]) == 0
    table = capsys.readouterr().out
    assert "id (unique)" in table
    assert "75%" in table


def test_profile_of_a_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["profile", str(tmp_path / "none.csv")]) == 1
    assert "none.csv" in capsys.readouterr().err
