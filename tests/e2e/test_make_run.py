"""``make run`` for real: the local stack, the demo onboarding approved through the REST API."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest
import requests

from scripts.demo_data import build
from tests.harness.services import free_port

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
RUN_TIMEOUT = 900.0
STOP_TIMEOUT = 120.0
DEMO_TOKEN = "sandbox-demo-token"
TYPE_IDS = {"V": 380, "E": 381, "R": 382}


class Output:
    """Collects the lines a process prints, on a thread, so that waits can time out."""

    def __init__(self, process: subprocess.Popen[str]):
        self.lines: list[str] = []
        self._process = process
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        assert self._process.stdout is not None
        for line in self._process.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def text(self) -> str:
        return "\n".join(self.lines)

    def wait_for(self, marker: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while marker not in self.text:
            if self._process.poll() is not None:
                self._thread.join(5)
                if marker in self.text:
                    break
                pytest.fail(
                    f"run_local.py exited with {self._process.returncode} before printing "
                    f"{marker!r}:\n{self.text}"
                )
            if time.monotonic() > deadline:
                pytest.fail(f"no {marker!r} from run_local.py within {timeout:.0f} s:\n{self.text}")
            time.sleep(1)
        return self.text

    def wait_exit(self, timeout: float) -> int:
        code = self._process.wait(timeout=timeout)
        self._thread.join(10)
        return code


def stack_processes(var_dir: Path, runner: int | None = None) -> list[psutil.Process]:
    """Every process of a run on ``var_dir``: the runner's descendants, and any process whose
    AIRFLOW_HOME or command line lies in ``var_dir`` (which finds orphans too)."""
    found: dict[int, psutil.Process] = {}
    if runner is not None:
        with contextlib.suppress(psutil.Error):
            found.update({p.pid: p for p in psutil.Process(runner).children(recursive=True)})
    marker = str(var_dir)
    for process in psutil.process_iter(["pid", "cmdline"]):
        with contextlib.suppress(psutil.Error):
            if process.pid == os.getpid():
                continue
            cmdline = " ".join(process.info["cmdline"] or [])
            home = process.environ().get("AIRFLOW_HOME", "")
            if marker in cmdline or home.startswith(marker):
                found.setdefault(process.pid, process)
    return list(found.values())


def command_line(process: psutil.Process) -> str:
    try:
        return " ".join(process.cmdline())
    except psutil.Error:  # a zombie, or gone already
        return ""


def sandbox_profiles(port: int) -> list[dict]:
    profiles: list[dict] = []
    page = 1
    while True:
        response = requests.get(
            f"http://127.0.0.1:{port}/1/thing/register/detail",
            params={"page": page, "limit": 1000},
            headers={"Authorization": f"Bearer {DEMO_TOKEN}"},
            timeout=30,
        )
        response.raise_for_status()
        data = response.json()["data"]
        if not data:
            return profiles
        profiles.extend(data)
        page += 1


def sandbox_pushes(port: int) -> list[dict]:
    response = requests.get(
        f"http://127.0.0.1:{port}/_sandbox/log", params={"limit": 10000}, timeout=30
    )
    response.raise_for_status()
    return [line for line in response.json() if line["method"] == "POST"]


def stop_and_reap(process: subprocess.Popen[str], var_dir: Path) -> None:
    """After a failure: SIGINT as a person would, then kill whatever of the run is left."""
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=STOP_TIMEOUT)
    if process.poll() is None:
        process.kill()
    for leftover in stack_processes(var_dir):
        with contextlib.suppress(psutil.Error):
            leftover.kill()


@pytest.mark.timeout(RUN_TIMEOUT + STOP_TIMEOUT + 120)
def test_make_run_auto_approves_imports_the_valid_demo_records_and_stops_cleanly(tmp_path):
    var_dir = tmp_path / "var"
    airflow_port, sandbox_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW_", "GRIP_"))}
    env.update({"APPROVE": "auto", "PYTHONUNBUFFERED": "1"})
    command = [
        sys.executable,
        str(ROOT / "scripts" / "run_local.py"),
        "--var-dir",
        str(var_dir),
        "--airflow-port",
        str(airflow_port),
        "--sandbox-port",
        str(sandbox_port),
    ]
    process = subprocess.Popen(
        command,
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    output = Output(process)
    try:
        text = output.wait_for("Press Ctrl-C to stop", RUN_TIMEOUT)

        # What the project manager is told.
        assert f"http://127.0.0.1:{airflow_port}/required_actions?response_received=false" in text
        assert re.search(
            rf"http://127\.0\.0\.1:{airflow_port}/dags/grip_demo_onboarding/runs/\S+/tasks/"
            r"review_sample/required_actions",
            text,
        )
        assert "login:             admin / admin" in text
        assert f"http://127.0.0.1:{sandbox_port}/" in text
        assert "APPROVE=auto: approved the sample as admin" in text
        assert "510 read, 4 left out by the mappings' filters, 7 rejected by validation" in text
        assert "4 x email_format" in text
        sample = re.search(r"sample report:\s+(\S+)", text)
        assert sample is not None
        assert Path(sample.group(1)).is_file()
        assert Path(sample.group(1)).is_relative_to(var_dir / "local" / "reports")

        # The summaries of the full import and of the first sync.
        expected = build().all_valid_keys()
        full = re.search(
            r"Full import: run \d+ succeeded: created (\d+), updated 0, unchanged (\d+), "
            r"rejected 7 by validation and 0 by Grip, failed 0; report (\S+)",
            text,
        )
        assert full is not None, text
        assert int(full.group(1)) + int(full.group(2)) == len(expected)
        assert int(full.group(2)) == 25  # the sample's records, already in Grip
        sync = re.search(
            r"First sync: run \d+ succeeded: created 0, updated 0, unchanged (\d+), "
            r"rejected (\d+) by validation and 0 by Grip, failed 0",
            text,
        )
        assert sync is not None, text
        assert "started by the go-live Asset" in text

        # The sandbox holds exactly the valid demo records, each pushed once.
        profiles = sandbox_profiles(sandbox_port)
        assert {p["registration_id"] for p in profiles} == expected
        assert len(profiles) == len(expected)
        assert {p["registration_id"]: p["type_id"] for p in profiles} == {
            key: TYPE_IDS[key[0]] for key in expected
        }
        pushes = sandbox_pushes(sandbox_port)
        assert len(pushes) == len(expected)
        assert {line["reason"] for line in pushes} == {"created"}

        # Ctrl-C stops every process the run started.
        started = stack_processes(var_dir, runner=process.pid)
        names = " ".join(command_line(p) for p in started)
        for component in ("api_server", "scheduler", "dag-processor", "-m sandbox"):
            assert component in names.replace("api-server", "api_server"), names
        process.send_signal(signal.SIGINT)
        assert output.wait_exit(STOP_TIMEOUT) == 130
        assert "Stopped dag-processor" in output.text
        _, alive = psutil.wait_procs(started, timeout=30)
        assert [p.pid for p in alive if p.status() != psutil.STATUS_ZOMBIE] == []
        assert stack_processes(var_dir) == []
    finally:
        stop_and_reap(process, var_dir)
