"""The run, approve, reject and status commands, on PostgreSQL and the sandbox."""

from __future__ import annotations

import json

import pytest

from grip.cli import main
from tests.integration.test_sync import (  # noqa: F401 (feed and ledger_url are fixtures)
    Feed,
    feed,
    ledger_url,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def cli(feed: Feed, monkeypatch: pytest.MonkeyPatch):  # noqa: F811
    monkeypatch.setenv("GRIP_TOKEN", feed.sandbox.token)
    monkeypatch.setenv("GRIP_BASE_URL", feed.sandbox.base_url)
    path = str(feed.integration.path)
    folders = ["--work-dir", str(feed.folder / "work"), "--report-dir", str(feed.folder / "r")]

    def run(*args: str) -> int:
        if args[0] == "run":
            return main([args[0], path, *args[1:], "--no-progress", *folders])
        if args[0] in ("approve", "reject"):
            return main([args[0], path, *args[1:]])
        return main(list(args))

    return run


def test_commands_walk_an_integration_through_its_stages(
    cli,
    feed: Feed,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert cli("run", "--stage", "full") == 2
    assert "needs an approved sample" in capsys.readouterr().err
    assert cli("run", "--stage", "sample", "--dry-run") == 0
    assert "Dry run of" in capsys.readouterr().err
    assert feed.requests() == 0

    assert cli("run", "--stage", "sample") == 0
    assert "sample, succeeded" in capsys.readouterr().err
    assert cli("reject", "--by", "pm", "--comment", "titles wrong") == 0
    assert "stage is now sample_rejected" in capsys.readouterr().err
    assert cli("approve", "--by", "pm", "--fingerprint", "0" * 32) == 1
    assert "decide on that one" in capsys.readouterr().err
    assert cli("approve", "--by", "pm", "--comment", "fine") == 0
    assert cli("run", "--stage", "full") == 0
    capsys.readouterr()

    assert cli("status", str(feed.integration.path), "--json") == 0
    status = json.loads(capsys.readouterr().out)
    assert status[0]["stage"] == "live"
    assert (status[0]["decided_by"], status[0]["comment"]) == ("pm", "fine")
    assert [run["stage"] for run in status[0]["runs"]] == ["full", "sample"]
    assert status[0]["records"] == {"visitor": {"created": 60}}
    assert cli("status", str(feed.integration.path)) == 0
    assert "stage live" in capsys.readouterr().out


def test_a_partial_run_exits_3(
    cli,
    feed: Feed,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
) -> None:
    feed.execute("DELETE FROM {table} WHERE reg_id > 'R0011'")
    feed.run("sample")
    feed.approve()
    feed.sandbox.configure(error_500_share=1.0)  # the two records left fail after retries
    assert cli("run", "--stage", "full") == 3
    assert "failed (no answer after retries)" in capsys.readouterr().err
