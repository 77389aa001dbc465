"""Fixtures of the DAG tests: a folder of integration files the project's DAG file builds from."""

from __future__ import annotations

import json
import shutil
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DEMO_MAPPINGS = ROOT / "include" / "mappings" / "demo"


@dataclass
class IntegrationFolder:
    """A temporary include/ tree: integrations/, mappings/ and a CSV drop."""

    root: Path

    @property
    def integrations(self) -> Path:
        return self.root / "integrations"

    @property
    def mappings(self) -> Path:
        return self.root / "mappings"

    @property
    def drop(self) -> Path:
        return self.root / "drop"

    def write_integration(self, name: str, *, schedule: str = "@hourly", extra: str = "") -> Path:
        path = self.integrations / f"{name}.yaml"
        path.write_text(
            textwrap.dedent(
                f"""\
                name: {name}
                event: Test Expo
                application:
                  languages: [en-gb, ru-ru]
                  type_ids: {{exhibitor: 381}}
                  container_ids: [90001]
                data_types:
                  exhibitor:
                    mapping: ../mappings/exhibitor.yaml
                    source:
                      kind: file
                      path: ../drop
                      pattern: {name}_exhibitors_*.csv
                schedule: "{schedule}"
                sample_size: 10
                """
            )
            + extra
        )
        return path


@pytest.fixture
def integration_folder(tmp_path, monkeypatch) -> IntegrationFolder:
    folder = IntegrationFolder(tmp_path / "include")
    folder.integrations.mkdir(parents=True)
    folder.drop.mkdir()
    shutil.copytree(DEMO_MAPPINGS, folder.mappings)
    monkeypatch.setenv("GRIP_INTEGRATIONS_DIR", str(folder.integrations))
    return folder


def airflow_connection(monkeypatch, conn_id: str, **fields) -> None:
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(fields))
