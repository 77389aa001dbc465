"""A run killed with SIGKILL in the middle of a push, then started again (real subprocesses)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from grip.engine.push import FLUSH_EVERY
from grip.ledger import RunStatus
from tests.integration.test_sync import (  # noqa: F401 (feed and ledger_url are fixtures)
    Feed,
    feed,
    ledger_url,
    source_rows,
)

pytestmark = pytest.mark.integration

ROWS = 300
CONCURRENCY = 4


def _command(target: Feed) -> list[str]:
    return [
        sys.executable,
        "-m",
        "grip",
        "run",
        str(target.integration.path),
        "--stage",
        "full",
        "--no-progress",
        "--work-dir",
        str(target.folder / "work"),
        "--report-dir",
        str(target.folder / "reports"),
    ]


def _env(target: Feed) -> dict[str, str]:
    return {
        **os.environ,
        "GRIP_TOKEN": target.sandbox.token,
        "GRIP_BASE_URL": target.sandbox.base_url,
        "PYTHONUNBUFFERED": "1",
    }


@pytest.fixture
def big_feed(request: pytest.FixtureRequest) -> Feed:
    """The feed with ROWS visitors and a concurrency the sandbox's latency makes slow."""
    target: Feed = request.getfixturevalue("feed")
    target.execute("DELETE FROM {table}")
    source_rows(ROWS).to_sql(target.table, target.source, index=False, if_exists="append")
    path = target.integration.path
    path.write_text(
        path.read_text(encoding="utf-8").replace(
            "limits: {max_reject_share: 0.2, chunk_size: 25}",
            f"limits: {{max_reject_share: 0.2, chunk_size: 50, concurrency: {CONCURRENCY}}}",
        ),
        encoding="utf-8",
    )
    from grip.config import load_integration

    target.integration = load_integration(path)
    return target


@pytest.mark.timeout(180)
def test_a_run_killed_mid_push_loses_nothing_and_resends_only_what_was_in_flight(
    big_feed: Feed, tmp_path: Path
) -> None:
    run = big_feed
    run.run("sample")
    run.approve()
    run.sandbox.configure(latency_ms=40)
    before = run.requests()

    first = subprocess.Popen(
        _command(run),
        env=_env(run),
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.monotonic() + 90
    while run.requests() - before < 60:
        assert first.poll() is None, first.stdout.read().decode() if first.stdout else ""
        assert time.monotonic() < deadline, "the first run pushed nothing within 90 s"
        time.sleep(0.05)
    os.killpg(first.pid, signal.SIGKILL)
    first.wait(timeout=10)
    assert first.returncode == -signal.SIGKILL
    time.sleep(0.5)  # requests the server had already received are answered

    name = run.integration.name
    killed = run.ledger.runs(name, limit=1)[0]
    assert (killed.stage, killed.status) == ("full", "running")
    in_grip = set(run.stored())
    state = run.ledger.load_state(name)
    accepted = set(state.loc[state["accepted_hash"].notna(), "registration_id"])
    assert accepted <= in_grip
    assert 10 <= len(accepted) < ROWS  # the kill came in the middle of the push
    resent_at_most = len(in_grip - accepted)
    assert resent_at_most <= CONCURRENCY * 2 + FLUSH_EVERY

    run.sandbox.configure(latency_ms=0)
    pushed_before = run.requests()
    second = subprocess.run(
        _command(run), env=_env(run), cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert second.returncode == 0, second.stderr[-3000:]

    runs = run.ledger.runs(name, limit=2)
    assert runs[0].status == RunStatus.SUCCEEDED.value
    assert runs[1].id == killed.id
    assert runs[1].status == RunStatus.ABANDONED.value
    # only what Grip had not accepted was pushed; nothing accepted was sent again
    assert runs[0].counts["to_push"] == ROWS - len(accepted)
    assert run.requests() - pushed_before == ROWS - len(accepted)
    stored = run.stored()
    assert sorted(stored) == sorted(source_rows(ROWS)["reg_id"])
    state = run.ledger.load_state(name)
    assert state["accepted_hash"].notna().all()
    assert len(state) == ROWS
    assert set(state["last_outcome"]) <= {"created", "updated"}
