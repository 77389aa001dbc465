"""The main job on embedded defaults (``make run``): the demo onboarding on a local Airflow."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import secrets
import shutil
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any
from urllib.parse import quote

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import requests  # noqa: E402

from scripts import demo_data  # noqa: E402
from scripts.local_stack import (  # noqa: E402
    AirflowApi,
    ApiUnavailable,
    Processes,
    StackError,
    free_port,
    port_in_use,
    tail,
    wait_for,
)

DEMO_TOKEN = "sandbox-demo-token"
INTEGRATION = "demo"
ONBOARDING = f"grip_{INTEGRATION}_onboarding"
SYNC = f"grip_{INTEGRATION}_sync"
REVIEW_TASK = "review_sample"
POOL = "grip_api"
POOL_SLOTS = 4
APPROVAL_COMMENT = "Approved by make run (APPROVE=auto): the sample matches the demo export."

# Seconds allowed for each wait: generous, for 2 cores shared with other work.
TIMEOUTS = {
    "sandbox": 60,
    "migrate": 300,
    "airflow": 300,
    "parse": 300,
    "sample": 600,
    "park": 90,
    "full": 900,
    "sync_start": 120,
    "sync": 600,
}


class Interrupted(BaseException):
    """Ctrl-C or SIGTERM: stop what was started and leave."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


@dataclass(frozen=True)
class Settings:
    """What one ``make run`` starts, and where its state lives."""

    var_dir: Path
    approve: str
    once: bool
    airflow_port: int
    sandbox_port: int
    admin_user: str
    admin_password: str
    parallelism: int

    @property
    def local(self) -> Path:
        return self.var_dir / "local"

    @property
    def demo(self) -> Path:
        return self.var_dir / "demo"

    @property
    def airflow_home(self) -> Path:
        return self.local / "airflow"

    @property
    def logs(self) -> Path:
        return self.local / "logs"

    @property
    def reports(self) -> Path:
        return self.local / "reports"

    @property
    def airflow_url(self) -> str:
        return f"http://127.0.0.1:{self.airflow_port}"

    @property
    def sandbox_url(self) -> str:
        return f"http://127.0.0.1:{self.sandbox_port}"


def parse_settings(argv: list[str] | None = None) -> Settings:
    """Settings from the command line, then the environment, then the defaults."""
    env = os.environ
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--approve",
        choices=("manual", "auto"),
        default=env.get("APPROVE") or "manual",
        help="manual: wait for a person on the Required Actions page (default); auto: approve "
        "through the REST API and wait for the full import and the first sync (APPROVE=auto)",
    )
    parser.add_argument(
        "--once",
        action="store_true",
        default=env.get("GRIP_RUN_ONCE", "") in ("1", "true", "yes"),
        help="with --approve auto: stop everything after the summaries instead of waiting",
    )
    parser.add_argument(
        "--var-dir",
        type=Path,
        default=Path(env.get("GRIP_VAR_DIR") or ROOT / "var"),
        help="folder of local/ (the run's state) and demo/ (partner data); default var/",
    )
    parser.add_argument(
        "--airflow-port", type=int, default=int(env.get("GRIP_AIRFLOW_PORT") or 8080)
    )
    parser.add_argument(
        "--sandbox-port",
        type=int,
        default=int(env.get("GRIP_SANDBOX_PORT") or env.get("SANDBOX_PORT") or 8900),
    )
    parser.add_argument("--parallelism", type=int, default=4, help="Airflow task slots")
    args = parser.parse_args(argv)
    if args.approve not in ("manual", "auto"):
        parser.error(f"APPROVE must be manual or auto, not {args.approve!r}")
    if args.once and args.approve != "auto":
        parser.error("--once needs --approve auto: a manual approval needs the stack running")
    return Settings(
        var_dir=args.var_dir.resolve(),
        approve=args.approve,
        once=args.once,
        airflow_port=args.airflow_port,
        sandbox_port=args.sandbox_port,
        admin_user=env.get("GRIP_ADMIN_USER") or "admin",
        admin_password=env.get("GRIP_ADMIN_PASSWORD") or "admin",
        parallelism=args.parallelism,
    )


class Console:
    """Progress lines with the time since the start."""

    def __init__(self) -> None:
        self.started = time.monotonic()

    def say(self, message: str = "") -> None:
        elapsed = time.monotonic() - self.started
        prefix = f"[{int(elapsed) // 60:2d}:{int(elapsed) % 60:02d}] " if message else ""
        print(f"{prefix}{message}", flush=True)

    def block(self, lines: list[str]) -> None:
        print("\n".join(lines), flush=True)

    def elapsed(self) -> str:
        seconds = int(time.monotonic() - self.started)
        return f"{seconds // 60} min {seconds % 60:02d} s"


class LocalRun:
    """One ``make run``: the stack's processes, the demo onboarding, and what it prints."""

    def __init__(self, settings: Settings, console: Console):
        self.settings = settings
        self.console = console
        self.processes = Processes(settings.logs, ROOT)
        self.api = AirflowApi(settings.airflow_url, settings.admin_user, settings.admin_password)
        self.integrations_dir: Path | None = None
        self.prepared = False
        self._secrets = {
            "fernet": _fernet_key(),
            "api": secrets.token_urlsafe(16),
            "jwt": secrets.token_urlsafe(32),
        }
        self._log_ports = (free_port(), free_port())

    # -- setting up ---------------------------------------------------------------------------

    def prepare(self) -> None:
        """Check the ports, clear the last run's state, write the demo partner data."""
        s = self.settings
        for name, port, variable in (
            ("Airflow", s.airflow_port, "GRIP_AIRFLOW_PORT"),
            ("the sandbox", s.sandbox_port, "GRIP_SANDBOX_PORT"),
        ):
            if port_in_use(port):
                raise StackError(
                    f"port {port} for {name} is already in use (an earlier make run still "
                    f"running?); stop what holds it or choose another port with {variable}=..."
                )
        _refuse_if_running(s.local / "run.json")
        if s.local.exists():
            self.console.say(f"Starting afresh: removing {_show(s.local)} of the previous run")
            shutil.rmtree(s.local)
        for folder in (s.local, s.logs, s.airflow_home, s.reports, s.local / "work"):
            folder.mkdir(parents=True, exist_ok=True)
        (s.local / "run.json").write_text(json.dumps({"pid": os.getpid()}))
        self.prepared = True

        # The ledger is made here, once: migrated, and in WAL mode (kept in the file), so that
        # the tasks' connections read while another task writes.
        from grip.ledger import Ledger

        Ledger(f"sqlite:///{s.local / 'ledger.sqlite'}").close()

        data = demo_data.build()
        paths = demo_data.write_demo(s.demo, data)
        counts = {name: len(frame) for name, frame in data.frames.items()}
        self.console.say(
            f"Demo partner data: {counts['visitor']} visitors in {_show(paths['sqlite'])}, "
            f"{counts['exhibitor']} exhibitors and {counts['representative']} representatives "
            f"in {_show(paths['drop'])}/"
        )
        if s.var_dir != ROOT / "var":
            # The repository's demo.yaml reads var/demo/drop: give the DAGs a copy that reads
            # this run's drop instead.
            copy = demo_data.integration_copy(s.demo / "drop", s.local / "integrations")
            self.integrations_dir = copy.parent

    def start_sandbox(self) -> None:
        s = self.settings
        self.console.say(f"Starting the Grip sandbox on {s.sandbox_url}/")
        service = self.processes.spawn(
            "sandbox",
            [
                sys.executable,
                "-m",
                "sandbox",
                "--port",
                str(s.sandbox_port),
                "--db",
                str(s.local / "sandbox.sqlite"),
            ],
            self._base_env(),
        )

        def healthy() -> bool | None:
            service.check()
            with contextlib.suppress(requests.RequestException):
                if requests.get(f"{s.sandbox_url}/_sandbox/health", timeout=2).ok:
                    return True
            return None

        wait_for(
            "the sandbox to answer",
            healthy,
            timeout=TIMEOUTS["sandbox"],
            interval=0.3,
            detail=lambda: tail(service.log_path),
        )

    def airflow_env(self) -> dict[str, str]:
        """The environment of every Airflow process."""
        s = self.settings
        env = self._base_env()
        env.update(
            {
                "AIRFLOW_HOME": str(s.airflow_home),
                "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
                "AIRFLOW__CORE__PARALLELISM": str(s.parallelism),
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
                "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
                "AIRFLOW__CORE__FERNET_KEY": self._secrets["fernet"],
                "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{s.airflow_url}/execution/",
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{s.admin_user}:admin",
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(
                    s.airflow_home / "simple_auth_manager_passwords.json"
                ),
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{s.airflow_home / 'airflow.db'}",
                "AIRFLOW__API__HOST": "127.0.0.1",
                "AIRFLOW__API__PORT": str(s.airflow_port),
                "AIRFLOW__API__BASE_URL": s.airflow_url,
                "AIRFLOW__API__WORKERS": "1",
                "AIRFLOW__API__SECRET_KEY": self._secrets["api"],
                "AIRFLOW__API_AUTH__JWT_SECRET": self._secrets["jwt"],
                "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "1",
                "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "10",
                "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "30",
                "AIRFLOW__DAG_PROCESSOR__PRINT_STATS_INTERVAL": "600",
                "AIRFLOW__LOGGING__COLORED_CONSOLE_LOG": "False",
                "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(self._log_ports[0]),
                "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(self._log_ports[1]),
                "AIRFLOW_CONN_GRIP_DEFAULT": json.dumps(
                    {
                        "conn_type": "grip",
                        "host": f"{s.sandbox_url}/1",
                        "password": DEMO_TOKEN,
                        "extra": {"allow_http": True},
                    }
                ),
                "AIRFLOW_CONN_GRIP_LEDGER": json.dumps(
                    {"conn_type": "sqlite", "host": str(s.local / "ledger.sqlite")}
                ),
                "AIRFLOW_CONN_DEMO_PARTNER_DB": json.dumps(
                    {"conn_type": "sqlite", "host": str(s.demo / "partner.sqlite")}
                ),
                "GRIP_WORK_DIR": str(s.local / "work"),
                "GRIP_REPORT_DIR": str(s.reports),
            }
        )
        if self.integrations_dir is not None:
            env["GRIP_INTEGRATIONS_DIR"] = str(self.integrations_dir)
        return env

    def start_airflow(self) -> None:
        """Migrate the metadata database, start the three components, create the pool."""
        s = self.settings
        env = self.airflow_env()
        (s.airflow_home / "simple_auth_manager_passwords.json").write_text(
            json.dumps({s.admin_user: s.admin_password})
        )
        self.console.say(
            f"Creating Airflow's metadata database (SQLite) in {_show(s.airflow_home)}"
        )
        airflow = [sys.executable, "-m", "airflow"]
        self.processes.run("db-migrate", [*airflow, "db", "migrate"], env, TIMEOUTS["migrate"])
        self.console.say(
            "Starting Airflow: api-server, scheduler, dag-processor (LocalExecutor); "
            f"logs in {_show(s.logs)}/ (this takes a minute on 2 cores)"
        )
        for component in ("api-server", "scheduler", "dag-processor"):
            self.processes.spawn(component, [*airflow, component], env)

        def healthy() -> dict[str, Any] | None:
            self.processes.check_alive()
            health = self.api.health()
            if health is None:
                return None
            parts = ("metadatabase", "scheduler", "dag_processor")
            ok = all((health.get(part) or {}).get("status") == "healthy" for part in parts)
            return health if ok else None

        wait_for(
            "the Airflow api-server, scheduler and dag-processor to report healthy",
            healthy,
            timeout=TIMEOUTS["airflow"],
            interval=2,
            detail=self._component_tails,
        )
        self.api.set_pool(POOL, POOL_SLOTS, "Tasks that push to the Grip API")
        self.console.say(f"Airflow is up at {s.airflow_url}/ (pool {POOL}: {POOL_SLOTS} slots)")

    def wait_dags(self) -> None:
        """Wait until both demo DAGs are parsed, then unpause them."""
        self.console.say(f"Waiting for the dag-processor to parse {ONBOARDING} and {SYNC}")

        def parsed() -> bool | None:
            self.processes.check_alive()
            for error in self.api.import_errors():
                if Path(error.get("filename", "")).name.startswith("grip_"):
                    raise StackError(
                        f"the DAG file {error['filename']} does not import:\n"
                        f"{error.get('stack_trace', '')}"
                    )
            return True if all(self.api.dag_ready(d) for d in (ONBOARDING, SYNC)) else None

        wait_for(
            "the demo DAGs to be parsed",
            parsed,
            timeout=TIMEOUTS["parse"],
            interval=2,
            detail=lambda: tail(self.settings.logs / "dag-processor.log", 40),
        )
        for dag_id in (ONBOARDING, SYNC):
            self.api.unpause(dag_id)
        self.console.say(f"{ONBOARDING} and {SYNC} are parsed and unpaused")

    # -- the onboarding -----------------------------------------------------------------------

    def trigger_onboarding(self) -> str:
        # A run id without ':' or '+', so that the link to its approval page reads cleanly.
        run_id = self.api.trigger(ONBOARDING, run_id=f"make_run__{time.strftime('%Y%m%dT%H%M%S')}")
        self.console.say(
            f"Triggered {ONBOARDING} (run {run_id}): extract, validate and push the sample"
        )
        return run_id

    def wait_review(self, run_id: str) -> dict[str, Any]:
        """Wait until the approval task awaits input; return the sample's result (XCom)."""

        def waiting() -> dict[str, Any] | None:
            self.processes.check_alive()
            ti = self.api.task_instance(ONBOARDING, run_id, REVIEW_TASK)
            if ti is not None and ti["state"] == "awaiting_input":
                return ti
            self._fail_if_over(ONBOARDING, run_id)
            return None

        ti = wait_for(
            f"{REVIEW_TASK} of {ONBOARDING} to await input",
            waiting,
            timeout=TIMEOUTS["sample"],
            interval=2,
            detail=lambda: self._run_detail(ONBOARDING, run_id),
        )
        self._review_ti = ti
        return self.api.xcom(ONBOARDING, run_id, "push_sample") or {}

    def print_review(self, run_id: str, sample: dict[str, Any]) -> None:
        s = self.settings
        counts = sample.get("counts", {})
        report_dir = Path(sample.get("report_dir", s.reports))
        task_page = (
            f"{s.airflow_url}/dags/{ONBOARDING}/runs/{quote(run_id, safe=':+')}/tasks/"
            f"{REVIEW_TASK}/required_actions"
        )
        self.console.say("The sample waits for approval on the Required Actions page:")
        lines = [
            f"  Required Actions:  {s.airflow_url}/required_actions?response_received=false",
            f"  this sample:       {task_page}",
            f"  login:             {s.admin_user} / {s.admin_password}",
            f"  sample:            {counts.get('to_push', 0)} records pushed (created "
            f"{counts.get('created', 0)}, updated {counts.get('updated', 0)}, rejected by Grip "
            f"{counts.get('rejected', 0)}, failed {counts.get('failed', 0)})",
            f"  source rows:       {counts.get('read', 0)} read, {counts.get('filtered', 0)} left "
            f"out by the mappings' filters, {counts.get('invalid', 0)} rejected by validation",
        ]
        for reason, count in _top_reasons(report_dir):
            lines.append(f"                       {count} x {reason}")
        lines += [
            f"  sample report:     {_show(report_dir / 'summary.md')}",
            f"  reports folder:    {_show(s.reports / INTEGRATION)}",
            f"  Grip sandbox:      {s.sandbox_url}/ (the pushed records and the request log)",
        ]
        if s.approve == "manual":
            lines.append(
                "  Open the link, log in, read the report, write a comment and press Approve "
                "(full import) or Reject (nothing more is pushed)."
            )
        lines.append("")
        self.console.block(lines)

    def approve(self, run_id: str) -> None:
        """Answer the approval task through the REST API, as the Required Actions page does."""
        self._wait_park_acknowledged()
        self.api.answer(ONBOARDING, run_id, REVIEW_TASK, "Approve", {"comment": APPROVAL_COMMENT})
        self.console.say(f"APPROVE=auto: approved the sample as {self.settings.admin_user}")

    def wait_decision(self, run_id: str) -> bool:
        """Wait (as long as it takes) for a person to answer; return whether they approved."""
        self.console.say(
            "Waiting for the project manager's decision; this window follows the run "
            "(Ctrl-C stops everything)"
        )
        while True:
            self.processes.check_alive()
            with contextlib.suppress(ApiUnavailable):
                detail = self.api.hitl_detail(ONBOARDING, run_id, REVIEW_TASK)
                if detail.get("response_received"):
                    approved = (detail.get("chosen_options") or [])[:1] == ["Approve"]
                    user = detail.get("responded_by_user") or {}
                    comment = (detail.get("params_input") or {}).get("comment") or "no comment"
                    self.console.say(
                        f"The sample was {'approved' if approved else 'rejected'} by "
                        f"{user.get('name') or user.get('id') or 'someone'} ({comment})"
                    )
                    return approved
            time.sleep(3)

    def wait_full(self, run_id: str) -> dict[str, Any]:
        """Wait for the full import and go-live; return the full run's result (XCom)."""
        self.console.say("Importing every valid record (plan_full, push_full, finish_full)")

        def done() -> dict[str, Any] | None:
            self.processes.check_alive()
            run = self.api.run(ONBOARDING, run_id)
            if run["state"] == "success":
                return run
            self._fail_if_over(ONBOARDING, run_id)
            return None

        wait_for(
            f"{ONBOARDING} run {run_id} to finish",
            done,
            timeout=TIMEOUTS["full"],
            interval=3,
            detail=lambda: self._run_detail(ONBOARDING, run_id),
        )
        return self.api.xcom(ONBOARDING, run_id, "finish_full") or {}

    def wait_first_sync(self) -> tuple[str, dict[str, Any] | None]:
        """Wait for the sync the go-live Asset starts (trigger one if none comes)."""
        self.console.say(f"Live: waiting for the go-live Asset to start {SYNC}")

        def started() -> str | None:
            self.processes.check_alive()
            for run in self.api.runs(SYNC):
                if run["run_type"] == "asset_triggered":
                    return str(run["dag_run_id"])
            return None

        try:
            run_id = wait_for(
                f"an asset-triggered run of {SYNC}",
                started,
                timeout=TIMEOUTS["sync_start"],
                interval=2,
            )
        except StackError:
            run_id = self.api.trigger(SYNC)
            self.console.say(f"No asset-triggered sync came: triggered {SYNC} run {run_id}")
        else:
            self.console.say(f"{SYNC} run {run_id} started by the go-live Asset")

        def done() -> dict[str, Any] | None:
            self.processes.check_alive()
            run = self.api.run(SYNC, run_id)
            if run["state"] == "success":
                return run
            self._fail_if_over(SYNC, run_id)
            return None

        wait_for(
            f"{SYNC} run {run_id} to finish",
            done,
            timeout=TIMEOUTS["sync"],
            interval=3,
            detail=lambda: self._run_detail(SYNC, run_id),
        )
        return run_id, self.api.xcom(SYNC, run_id, "finish_sync")

    def print_summary(self, title: str, result: dict[str, Any] | None) -> None:
        if not result:
            self.console.say(f"{title}: skipped (the integration is not live)")
            return
        counts = result.get("counts", {})
        report = Path(result.get("report_dir", "")) / "summary.md"
        self.console.say(
            f"{title}: run {result.get('run_id')} {result.get('status')}: "
            f"created {counts.get('created', 0)}, updated {counts.get('updated', 0)}, "
            f"unchanged {counts.get('planned_unchanged', 0)}, "
            f"rejected {counts.get('invalid', 0)} by validation and "
            f"{counts.get('rejected', 0)} by Grip, failed {counts.get('failed', 0)}; "
            f"report {_show(report)}"
        )

    def watch(self) -> None:
        """Keep running until Ctrl-C; fail when a process of the stack dies."""
        while True:
            self.processes.check_alive()
            time.sleep(2)

    def stop(self) -> None:
        if self.processes.services:
            names = ", ".join(service.name for service in reversed(self.processes.services))
            self.console.say(f"Stopping {names}")
        stopped = self.processes.stop_all()
        with contextlib.suppress(OSError):
            (self.settings.local / "run.json").unlink()
        if stopped:
            self.console.say("Stopped " + ", ".join(stopped))

    # -- helpers ------------------------------------------------------------------------------

    def _base_env(self) -> dict[str, str]:
        """This process's environment without Airflow and grip-sync settings of the caller."""
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("AIRFLOW_", "AIRFLOW__", "GRIP_"))
        }
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def _wait_park_acknowledged(self) -> None:
        """Wait until the scheduler has seen the approval task park.

        NOTE: Airflow 3.3.2 fails the task ("state changed externally") when the answer comes
        before the scheduler has processed the executor's event of the parked workload; the
        scheduler logs a "TaskInstance Finished" line with state awaiting_input at that point.
        """
        ti = self._review_ti
        needles = (
            "TaskInstance Finished:",
            f"ti_id={ti['id']},",
            "state=awaiting_input,",
            f"try_number={ti['try_number']},",
        )
        scheduler_log = self.settings.logs / "scheduler.log"

        def seen() -> bool | None:
            self.processes.check_alive()
            text = scheduler_log.read_text(errors="replace")
            return (
                True if any(all(n in line for n in needles) for line in text.splitlines()) else None
            )

        try:
            wait_for(
                "the scheduler to see the approval task park",
                seen,
                timeout=TIMEOUTS["park"],
                interval=0.5,
            )
        except StackError:
            self.console.say("The scheduler log does not show the park yet; answering anyway")

    def _fail_if_over(self, dag_id: str, run_id: str) -> None:
        run = self.api.run(dag_id, run_id)
        if run["state"] == "failed":
            raise StackError(f"{dag_id} run {run_id} failed.\n{self._run_detail(dag_id, run_id)}")

    def _run_detail(self, dag_id: str, run_id: str) -> str:
        """Task states of the run and the end of the log of each task that did not succeed."""
        try:
            states = self.api.task_states(dag_id, run_id)
        except (StackError, requests.RequestException) as err:
            return f"(task states unavailable: {err})\n{self._component_tails()}"
        lines = ["task states: " + ", ".join(f"{t}={st}" for t, st in states.items())]
        for task, state in states.items():
            if state in ("failed", "up_for_retry", "upstream_failed", "running", "queued"):
                for path in _task_logs(self.settings.airflow_home, dag_id, run_id, task)[-1:]:
                    lines.append(f"--- end of {path} ---\n{_task_log_tail(path)}")
        lines.append(f"--- end of {self.settings.logs / 'scheduler.log'} ---")
        lines.append(tail(self.settings.logs / "scheduler.log", 15))
        return "\n".join(lines)

    def _component_tails(self) -> str:
        parts = []
        for name in ("api-server", "scheduler", "dag-processor"):
            path = self.settings.logs / f"{name}.log"
            parts.append(f"--- end of {path} ---\n{tail(path, 15)}")
        return "\n".join(parts)


# -- module helpers ---------------------------------------------------------------------------


def _fernet_key() -> str:
    from cryptography.fernet import Fernet

    return Fernet.generate_key().decode()


def _show(path: Path) -> str:
    """A path relative to the repository when it lies inside it."""
    try:
        return str(path.relative_to(ROOT))
    except ValueError:
        return str(path)


def _refuse_if_running(state_file: Path) -> None:
    """Refuse to clear var/local while the run that owns it is still going."""
    try:
        pid = int(json.loads(state_file.read_text())["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return
    cmdline = Path(f"/proc/{pid}/cmdline")
    if pid != os.getpid() and cmdline.exists() and b"run_local" in cmdline.read_bytes():
        raise StackError(
            f"another make run (pid {pid}) uses {state_file.parent}; stop it with Ctrl-C there, "
            f"or: kill -INT {pid}"
        )


def _top_reasons(report_dir: Path, limit: int = 5) -> list[tuple[str, int]]:
    try:
        summary = json.loads((report_dir / "summary.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    reasons = summary.get("validation_reasons") or {}
    return sorted(reasons.items(), key=lambda kv: -kv[1])[:limit]


def _task_logs(home: Path, dag_id: str, run_id: str, task: str) -> list[Path]:
    task_id, _, index = task.partition("[")
    folder = home / "logs" / f"dag_id={dag_id}" / f"run_id={run_id}" / f"task_id={task_id}"
    if index:
        folder = folder / f"map_index={index.rstrip(']')}"
    return sorted(folder.glob("attempt=*.log"), key=lambda p: p.stat().st_mtime)


def _task_log_tail(path: Path, lines: int = 12) -> str:
    """A task log's errors (exception and where it was raised), then its last lines.

    Task logs are JSON lines; each is shown as ``time level message``.
    """
    records = []
    for line in path.read_text(errors="replace").splitlines():
        try:
            records.append(json.loads(line))
        except ValueError:
            records.append({"event": line})
    shown = []
    for record in records:
        if record.get("level") in ("error", "critical"):
            shown.append(_log_line(record))
            for error in record.get("error_detail") or []:
                frames = error.get("frames") or [{}]
                where = f"{frames[-1].get('filename')}:{frames[-1].get('lineno')}"
                shown.append(f"    {error.get('exc_type')}: {error.get('exc_value')} ({where})")
    if shown:
        shown.insert(0, "errors:")
        shown.append("last lines:")
    shown.extend(_log_line(record) for record in records[-lines:])
    return "\n".join(shown)


def _log_line(record: dict[str, Any]) -> str:
    return f"{record.get('timestamp', '')} {record.get('level', '')} {record.get('event', '')}"


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise Interrupted(signum)


def main(argv: list[str] | None = None) -> int:
    """Set up and start the local stack, run the demo onboarding, stop everything at the end.

    Everything lives under ``var/local/`` (what an earlier run left there is removed first):

    * the Grip API sandbox (the stand-in for Grip, token ``sandbox-demo-token``);
    * the demo partner data: ``var/demo/partner.sqlite`` and the CSV drop ``var/demo/drop/``;
    * Airflow 3.3: api-server, scheduler and dag-processor, LocalExecutor on a SQLite metadata
      database, the simple auth manager with a known admin login, the project's ``dags/`` and
      ``plugins/``, connections as ``AIRFLOW_CONN_*`` variables and the ``grip_api`` pool.

    Then it triggers ``grip_demo_onboarding`` and, once the sample waits for approval, prints
    the link to the Required Actions page. With ``APPROVE=auto`` (or ``--approve auto``) it
    approves through the REST API itself; either way it follows the run through the full import
    and the first sync and prints their summaries. Ctrl-C (or SIGTERM) stops everything it
    started.

    Returns:
        0 when done (``--once``), 1 when a step failed, 128 + the signal number when stopped.
    """
    settings = parse_settings(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    console = Console()
    run = LocalRun(settings, console)
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    code = 0
    try:
        console.say(
            f"make run: the demo onboarding on a local Airflow (APPROVE={settings.approve}); "
            f"state in {_show(settings.local)}"
        )
        run.prepare()
        run.start_sandbox()
        run.start_airflow()
        run.wait_dags()
        run_id = run.trigger_onboarding()
        sample = run.wait_review(run_id)
        run.print_review(run_id, sample)
        if settings.approve == "auto":
            run.approve(run_id)
            approved = True
        else:
            approved = run.wait_decision(run_id)
        if approved:
            full = run.wait_full(run_id)
            run.print_summary("Full import", full)
            _, sync = run.wait_first_sync()
            run.print_summary("First sync", sync)
            console.say(f"The demo integration is live; done in {console.elapsed()}")
        else:
            console.say("Rejected: the ledger keeps the decision and nothing more is pushed")
        if settings.once:
            return 0
        console.say(
            f"Everything keeps running: Airflow {settings.airflow_url}/ (login "
            f"{settings.admin_user} / {settings.admin_password}), the sandbox "
            f"{settings.sandbox_url}/. Press Ctrl-C to stop."
        )
        run.watch()
    except Interrupted as why:
        console.say(f"{why}: stopping everything make run started")
        code = 128 + why.signum
    except StackError as err:
        console.say(f"make run failed: {err}")
        code = 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        run.stop()
        if run.prepared:
            console.say(
                f"The state of this run stays in {_show(settings.local)} (Airflow database, "
                "ledger, reports, logs) until the next make run starts afresh"
            )
    return code


if __name__ == "__main__":
    raise SystemExit(main())
