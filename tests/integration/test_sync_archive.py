"""Drop files are moved to their archive folder once a run has committed them, and only then."""

from __future__ import annotations

import shutil
import textwrap
from pathlib import Path

import pytest

from bench.datagen import exhibitors
from grip.api import ClientSettings, GripClient
from grip.config import load_integration
from grip.ledger import Ledger
from grip.sync import record_decision, run_stage

pytestmark = pytest.mark.integration

DEMO_MAPPINGS = Path(__file__).resolve().parents[2] / "include" / "mappings" / "demo"


def _integration(folder: Path, name: str) -> Path:
    shutil.copytree(DEMO_MAPPINGS, folder / "mappings")
    (folder / "drop").mkdir()
    path = folder / f"{name}.yaml"
    path.write_text(
        textwrap.dedent(
            f"""\
            name: {name}
            application:
              languages: [en-gb, ru-ru]
              type_ids: {{exhibitor: 381}}
              container_ids: [90001]
            data_types:
              exhibitor:
                mapping: mappings/exhibitor.yaml
                source: {{kind: file, path: drop, pattern: "exhibitors_*.csv",
                          select: unprocessed, archive_folder: {folder / "archive"}}}
            sample_size: 10
            limits: {{max_reject_share: 0.5}}
            """
        )
    )
    return path


def test_files_are_archived_after_a_committed_run_and_kept_after_a_failed_one(tmp_path, sandbox):
    path = _integration(tmp_path, "archiving")
    exhibitors(30, bad_share=0.0).to_csv(tmp_path / "drop" / "exhibitors_1.csv", index=False)
    integration = load_integration(path)
    settings = ClientSettings(
        base_url=sandbox.base_url,
        token=sandbox.token,
        max_attempts=2,
        backoff_base=0.01,
        backoff_max=0.02,
    )
    runs = {"work_root": tmp_path / "work", "report_root": tmp_path / "reports"}
    with (
        Ledger(f"sqlite:///{tmp_path / 'ledger.sqlite'}") as ledger,
        GripClient(settings) as client,
    ):
        run_stage(integration, "sample", client=client, ledger=ledger, **runs)
        assert (tmp_path / "drop" / "exhibitors_1.csv").exists()  # a sample commits no file
        record_decision("archiving", True, "pm@example.com", ledger=ledger)
        run_stage(integration, "full", client=client, ledger=ledger, **runs)
        assert not (tmp_path / "drop" / "exhibitors_1.csv").exists()
        assert (tmp_path / "archive" / "exhibitors_1.csv").exists()

        # a run whose records fail keeps its file for the next sync to read again
        second = exhibitors(40, bad_share=0.0).iloc[30:]
        second.to_csv(tmp_path / "drop" / "exhibitors_2.csv", index=False)
        sandbox.configure(error_503_share=1.0)
        failed = run_stage(integration, "sync", client=client, ledger=ledger, **runs)
        pushed = failed.counts["to_push"]
        assert pushed > 0
        assert failed.counts["failed"] == pushed
        assert (tmp_path / "drop" / "exhibitors_2.csv").exists()

        sandbox.configure(error_503_share=0.0)
        retried = run_stage(integration, "sync", client=client, ledger=ledger, **runs)
        assert retried.counts["created"] + retried.counts["updated"] == pushed
        assert sorted(p.name for p in (tmp_path / "archive").iterdir()) == [
            "exhibitors_1.csv",
            "exhibitors_2.csv",
        ]
