"""A real Airflow 3.3 (scheduler, dag-processor, api-server) on PostgreSQL for e2e tests."""

from __future__ import annotations

import contextlib
import ctypes
import json
import logging
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Collection, Generator, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
import requests

from tests.harness.services import free_port, scratch_database

logger = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[2]
PG_ADMIN_URL = os.environ.get(
    "GRIP_TEST_PG_ADMIN_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"
)
DATABASE_PREFIX = "grip_e2e_airflow_"
SCRATCH_BUNDLE = "e2e-scratch"
PROJECT_BUNDLE = "dags-folder"

TERMINAL_TI_STATES = frozenset({"success", "failed", "skipped", "upstream_failed", "removed"})
TERMINAL_RUN_STATES = frozenset({"success", "failed"})
COMPONENTS = ("api-server", "scheduler", "dag-processor")

T = TypeVar("T")


class StackError(Exception):
    """The Airflow stack did not start, a process died, or a wait ran out of time."""


@dataclass(frozen=True)
class StackConfig:
    """How to start an :class:`AirflowStack`.

    Attributes:
        dags_folder: Folder of the ``dags-folder`` bundle (also ``[core] dags_folder``).
        plugins_folder: ``[core] plugins_folder``.
        pg_admin_url: SQLAlchemy URL of a PostgreSQL server where a scratch metadata database
            is created and, at the end, dropped.
        extra_env: More environment for every Airflow process (``AIRFLOW_CONN_*``,
            ``AIRFLOW_VAR_*``, ``AIRFLOW__SECTION__KEY`` overrides, settings of the DAGs).
        connections: Connection id to URI or JSON, passed as ``AIRFLOW_CONN_<ID>`` variables.
        pools: Pool name to slot count, created through the REST API once the stack is up.
        admin_user: User name of the simple auth manager's admin.
        admin_password: Its password (written into the passwords file before start).
        parallelism: ``[core] parallelism``, the LocalExecutor's number of task slots.
        min_file_process_interval: Seconds before a parsed DAG file is parsed again.
        refresh_interval: Seconds between listings of a bundle's folder (new files).
        startup_timeout: Seconds allowed for migration plus start of all three processes.
    """

    dags_folder: Path = ROOT / "dags"
    plugins_folder: Path = ROOT / "plugins"
    pg_admin_url: str = PG_ADMIN_URL
    extra_env: Mapping[str, str] = field(default_factory=dict)
    connections: Mapping[str, str] = field(default_factory=dict)
    pools: Mapping[str, int] = field(default_factory=dict)
    admin_user: str = "admin"
    admin_password: str = field(default_factory=lambda: secrets.token_urlsafe(12))
    parallelism: int = 4
    min_file_process_interval: int = 10
    refresh_interval: int = 2
    startup_timeout: float = 240.0


def default_config() -> StackConfig:
    """The configuration of the session's stack: the project's DAGs and the ``grip_api`` pool.

    ``GRIP_E2E_DAGS_FOLDER`` points the ``dags-folder`` bundle at another folder.
    """
    dags = Path(os.environ.get("GRIP_E2E_DAGS_FOLDER", ROOT / "dags")).resolve()
    return StackConfig(dags_folder=dags, pools={"grip_api": 4})


def _wait_for(
    what: str,
    probe: Callable[[], T | None],
    *,
    timeout: float,
    interval: float = 0.5,
    on_timeout: Callable[[], str] | None = None,
) -> T:
    """Call ``probe`` until it returns something other than None, for at most ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        result = probe()
        if result is not None:
            return result
        if time.monotonic() > deadline:
            detail = on_timeout() if on_timeout else ""
            raise StackError(
                f"timed out after {timeout:.0f} s waiting for {what}. {detail}".strip()
            )
        time.sleep(interval)


def _die_with_parent() -> None:
    """Run in the child before exec: own process group, SIGTERM when the test process dies."""
    os.setsid()
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM)


def _tail(path: Path, lines: int) -> str:
    if not path.exists():
        return f"({path} does not exist)"
    text = path.read_text(errors="replace").splitlines()
    return "\n".join(text[-lines:])


class AirflowClient:
    """A small client of Airflow 3.3's public REST API (``/api/v2``) for tests.

    Args:
        base_url: Root URL of the api-server, e.g. ``http://127.0.0.1:8080``.
        username: A simple auth manager user.
        password: Its password.
        request_timeout: Seconds allowed for one HTTP request.
    """

    def __init__(
        self, base_url: str, username: str, password: str, *, request_timeout: float = 30.0
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.username = username
        self._password = password
        self._timeout = request_timeout
        self._session = requests.Session()
        self._token: str | None = None
        # Called with the task instance before a HITL answer; the stack sets it (see answer_hitl).
        self.before_answer: Callable[[dict[str, Any]], None] | None = None

    # -- plumbing -----------------------------------------------------------------------------

    def token(self) -> str:
        """Return a JWT for the admin user, fetched with ``POST /auth/token`` when needed."""
        if self._token is None:
            response = self._session.post(
                f"{self.base_url}/auth/token",
                json={"username": self.username, "password": self._password},
                timeout=self._timeout,
            )
            if response.status_code != 201:
                raise StackError(
                    f"POST /auth/token for user {self.username!r} answered "
                    f"{response.status_code}: {response.text[:300]}; expected 201 with a token"
                )
            self._token = str(response.json()["access_token"])
        return self._token

    def request(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        params: Mapping[str, Any] | None = None,
        expect: Collection[int] = (200,),
    ) -> requests.Response:
        """Send an authenticated request to ``/api/v2{path}``; fail unless the status is expected.

        A 401 (expired token) fetches a new token once and repeats the request.
        """
        url = f"{self.base_url}/api/v2{path}"
        for attempt in (1, 2):
            response = self._session.request(
                method,
                url,
                json=json_body,
                params=params,
                headers={"Authorization": f"Bearer {self.token()}"},
                timeout=self._timeout,
            )
            if response.status_code == 401 and attempt == 1:
                self._token = None
                continue
            break
        if response.status_code not in expect:
            raise StackError(
                f"{method} /api/v2{path} answered {response.status_code}: "
                f"{response.text[:600]}; expected {sorted(expect)}"
            )
        return response

    def _get_json(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, params=params or None).json()

    # -- health and setup ---------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        """Return ``GET /api/v2/monitor/health`` (no token needed)."""
        response = self._session.get(f"{self.base_url}/api/v2/monitor/health", timeout=5)
        response.raise_for_status()
        return dict(response.json())

    def set_pool(self, name: str, slots: int, description: str = "") -> None:
        """Create pool ``name`` with ``slots`` slots, or update it when it exists."""
        body = {
            "name": name,
            "slots": slots,
            "description": description or None,
            "include_deferred": False,
        }
        response = self.request("POST", "/pools", json_body=body, expect=(201, 409))
        if response.status_code == 409:
            self.request("PATCH", f"/pools/{name}", json_body=body, params={"update_mask": "slots"})

    def pools(self) -> dict[str, int]:
        """Return every pool's slot count by name."""
        body = self._get_json("/pools", limit=100)
        return {pool["name"]: int(pool["slots"]) for pool in body["pools"]}

    def set_connection(self, conn_id: str, conn_type: str, **fields: Any) -> None:
        """Create or replace a connection stored in the metadata database.

        Args:
            conn_id: Connection id.
            conn_type: Connection type, e.g. ``postgres``, ``sftp``, ``http``.
            **fields: ``host``, ``port``, ``login``, ``password``, ``schema``, ``extra``
                (a dict is sent as JSON text).
        """
        if isinstance(fields.get("extra"), Mapping):
            fields["extra"] = json.dumps(fields["extra"])
        body = {"connection_id": conn_id, "conn_type": conn_type, **fields}
        self.request("DELETE", f"/connections/{conn_id}", expect=(204, 404))
        self.request("POST", "/connections", json_body=body, expect=(201,))

    def set_variable(self, key: str, value: Any) -> None:
        """Create or replace an Airflow variable (non-strings are stored as JSON)."""
        text = value if isinstance(value, str) else json.dumps(value)
        self.request("DELETE", f"/variables/{key}", expect=(204, 404))
        self.request("POST", "/variables", json_body={"key": key, "value": text}, expect=(201,))

    # -- DAGs ---------------------------------------------------------------------------------

    def import_errors(self) -> list[dict[str, Any]]:
        """Return the current DAG import errors (``filename``, ``bundle_name``, ``stack_trace``)."""
        return list(self._get_json("/importErrors", limit=100)["import_errors"])

    def dag(self, dag_id: str) -> dict[str, Any] | None:
        """Return the DAG's record, or None while the dag-processor has not stored it."""
        response = self.request("GET", f"/dags/{dag_id}", expect=(200, 404))
        return dict(response.json()) if response.status_code == 200 else None

    def wait_dag_parsed(
        self, dag_id: str, timeout: float = 60.0, *, fileloc: str | Path | None = None
    ) -> dict[str, Any]:
        """Wait until ``dag_id`` is parsed and serialized; return its record.

        Args:
            dag_id: The DAG to wait for.
            timeout: Hard limit in seconds.
            fileloc: The DAG's file; when an import error is recorded for it, fail at once.

        Raises:
            StackError: on timeout (with the import errors) or on an import error of ``fileloc``.
        """
        wanted = str(Path(fileloc).resolve()) if fileloc else None

        def probe() -> dict[str, Any] | None:
            if wanted:
                for error in self.import_errors():
                    if Path(error["filename"]).name == Path(wanted).name:
                        raise StackError(
                            f"DAG file {wanted} has an import error:\n{error['stack_trace']}"
                        )
            dag = self.dag(dag_id)
            if dag is None:
                return None
            details = self.request("GET", f"/dags/{dag_id}/details", expect=(200, 404))
            return dag if details.status_code == 200 else None

        return _wait_for(
            f"DAG {dag_id!r} to be parsed",
            probe,
            timeout=timeout,
            on_timeout=lambda: f"Import errors: {self.import_errors()}",
        )

    def unpause(self, dag_id: str) -> None:
        """Unpause ``dag_id`` (new DAGs are paused at creation)."""
        self.request(
            "PATCH",
            f"/dags/{dag_id}",
            json_body={"is_paused": False},
            params={"update_mask": "is_paused"},
        )

    # -- runs and task instances ----------------------------------------------------------------

    def trigger(
        self,
        dag_id: str,
        conf: Mapping[str, Any] | None = None,
        *,
        run_id: str | None = None,
        unpause: bool = True,
    ) -> str:
        """Trigger a manual run of ``dag_id`` with ``conf``; return its run id.

        Args:
            dag_id: The DAG.
            conf: The run's configuration (``dag_run.conf``).
            run_id: A run id of the caller's choosing; Airflow makes one up otherwise.
            unpause: Unpause the DAG first, so that the run starts at once.
        """
        if unpause:
            self.unpause(dag_id)
        body: dict[str, Any] = {"logical_date": None, "conf": dict(conf or {})}
        if run_id:
            body["dag_run_id"] = run_id
        response = self.request("POST", f"/dags/{dag_id}/dagRuns", json_body=body)
        run = str(response.json()["dag_run_id"])
        logger.info("Triggered %s run %s", dag_id, run)
        return run

    def run(self, dag_id: str, run_id: str) -> dict[str, Any]:
        """Return the DAG run's record."""
        return dict(self._get_json(f"/dags/{dag_id}/dagRuns/{run_id}"))

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        """Return every task instance of the run (mapped ones once per map index)."""
        body = self._get_json(f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances", limit=100)
        return list(body["task_instances"])

    def task_states(self, dag_id: str, run_id: str) -> dict[str, str | None]:
        """Return ``{task_id or task_id[map_index]: state}`` for the run."""
        return {
            ti["task_id"] if ti["map_index"] < 0 else f"{ti['task_id']}[{ti['map_index']}]": (
                ti["state"]
            )
            for ti in self.task_instances(dag_id, run_id)
        }

    def task_instance(
        self, dag_id: str, run_id: str, task_id: str, map_index: int = -1
    ) -> dict[str, Any] | None:
        """Return one task instance, or None while it does not exist yet (e.g. before mapping)."""
        path = f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}"
        if map_index >= 0:
            path += f"/{map_index}"
        response = self.request("GET", path, expect=(200, 404))
        return dict(response.json()) if response.status_code == 200 else None

    def wait_run(
        self,
        dag_id: str,
        run_id: str,
        states: Collection[str] = ("success",),
        timeout: float = 120.0,
    ) -> dict[str, Any]:
        """Wait until the run is in one of ``states``; return its record.

        Raises:
            StackError: on timeout, or when the run ends in a state not in ``states``; the
                message lists the state of every task instance.
        """
        wanted = set(states)

        def probe() -> dict[str, Any] | None:
            run = self.run(dag_id, run_id)
            if run["state"] in wanted:
                return run
            if run["state"] in TERMINAL_RUN_STATES:
                raise StackError(
                    f"run {dag_id}/{run_id} ended {run['state']!r}, expected one of "
                    f"{sorted(wanted)}; task states: {self.task_states(dag_id, run_id)}"
                )
            return None

        return _wait_for(
            f"run {dag_id}/{run_id} to reach {sorted(wanted)}",
            probe,
            timeout=timeout,
            on_timeout=lambda: f"Task states: {self.task_states(dag_id, run_id)}",
        )

    def wait_task_state(
        self,
        dag_id: str,
        run_id: str,
        task_id: str,
        state: str | Collection[str],
        timeout: float = 120.0,
        *,
        map_index: int = -1,
    ) -> dict[str, Any]:
        """Wait until a task instance (``map_index`` >= 0 for a mapped one) is in ``state``.

        Raises:
            StackError: on timeout, or when the task instance ends in another final state.
        """
        wanted = {state} if isinstance(state, str) else set(state)
        label = f"{task_id}[{map_index}]" if map_index >= 0 else task_id

        def probe() -> dict[str, Any] | None:
            ti = self.task_instance(dag_id, run_id, task_id, map_index)
            if ti is None:
                return None
            if ti["state"] in wanted:
                return ti
            if ti["state"] in TERMINAL_TI_STATES:
                raise StackError(
                    f"task {dag_id}/{run_id}/{label} ended {ti['state']!r}, expected "
                    f"{sorted(wanted)}; task states: {self.task_states(dag_id, run_id)}"
                )
            return None

        return _wait_for(
            f"task {dag_id}/{run_id}/{label} to reach {sorted(wanted)}",
            probe,
            timeout=timeout,
            on_timeout=lambda: f"Task states: {self.task_states(dag_id, run_id)}",
        )

    def xcom(
        self, dag_id: str, run_id: str, task_id: str, key: str = "return_value", map_index: int = -1
    ) -> Any:
        """Return an XCom value as stored (JSON-decoded), or raise StackError when it is absent."""
        path = f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/{key}"
        response = self.request("GET", path, params={"map_index": map_index}, expect=(200, 404))
        if response.status_code == 404:
            raise StackError(f"no XCom {key!r} for {dag_id}/{run_id}/{task_id}[{map_index}]")
        value = response.json()["value"]
        if isinstance(value, str):
            with contextlib.suppress(ValueError):
                return json.loads(value)
        return value

    # -- human in the loop --------------------------------------------------------------------

    def _hitl_path(self, dag_id: str, run_id: str, task_id: str, map_index: int) -> str:
        return f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/{map_index}/hitlDetails"

    def hitl_details(
        self, dag_id: str, run_id: str, task_id: str, map_index: int = -1
    ) -> dict[str, Any]:
        """Return the HITL detail of a task: request (subject, body, options, params) and answer.

        The answer is in ``response_received``, ``chosen_options``, ``params_input`` and
        ``responded_by_user``; it is there for a rejection too, which pushes no XCom.
        """
        return dict(self._get_json(self._hitl_path(dag_id, run_id, task_id, map_index)))

    def answer_hitl(
        self,
        dag_id: str,
        run_id: str,
        task_id: str,
        chosen_options: Collection[str] = ("Approve",),
        params_input: Mapping[str, Any] | None = None,
        map_index: int = -1,
    ) -> dict[str, Any]:
        """Answer a task that is ``awaiting_input``, as the Required Actions page does.

        Args:
            dag_id: The DAG.
            run_id: The run.
            task_id: The HITL task.
            chosen_options: E.g. ``["Approve"]`` or ``["Reject"]`` for an ApprovalOperator.
            params_input: Values of the task's form fields (all of them, or none).
            map_index: The map index of a mapped HITL task; -1 otherwise.

        Returns:
            The stored response (``responded_by``, ``chosen_options``, ``params_input``).

        NOTE: with Airflow 3.3.2, an answer that comes before the scheduler has processed the
        executor's event for the parked workload fails the task ("state changed externally").
        A person never answers that fast; a test does, so :attr:`before_answer` (set by
        :class:`AirflowStack`) first waits for the scheduler to acknowledge the park.
        """
        if self.before_answer is not None:
            ti = self.task_instance(dag_id, run_id, task_id, map_index)
            if ti is not None and ti["state"] == "awaiting_input":
                self.before_answer(ti)
        body = {"chosen_options": list(chosen_options), "params_input": dict(params_input or {})}
        path = self._hitl_path(dag_id, run_id, task_id, map_index)
        answer = dict(self.request("PATCH", path, json_body=body).json())
        logger.info("Answered %s/%s/%s[%s] with %s", dag_id, run_id, task_id, map_index, body)
        return answer


@dataclass
class _Process:
    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path


class AirflowStack:
    """Airflow's scheduler, dag-processor and api-server on a scratch PostgreSQL database.

    The LocalExecutor runs the tasks; ``AIRFLOW_HOME`` is a throw-away folder; the simple auth
    manager knows one admin user whose password is written before start; parsing is fast. There
    are two DAG bundles: ``dags-folder`` (the project's ``dags/``, or ``GRIP_E2E_DAGS_FOLDER``)
    and ``e2e-scratch``, an empty folder that tests write their own DAG files into
    (:meth:`write_dag`).

    Use :meth:`start` and :meth:`stop` (or ``with AirflowStack(config) as stack:``). After start,
    :attr:`client` talks to the api-server as the admin user. Every wait has a hard timeout;
    every process is stopped by process group, and dies with the test process if that is killed.

    In pytest, the session fixture ``airflow_stack`` starts one stack for the whole session
    (``pytest_plugins = ["tests.harness.airflow"]``). To start it with more environment
    (``AIRFLOW_CONN_*``, other pools), override the session fixture ``airflow_stack_config`` in
    ``tests/e2e/conftest.py``; connections, pools and variables can also be added at any time
    through the client. When a test fails while the stack runs, the tails of the process logs
    and of the newest task logs are attached to its report.

    Args:
        config: What to start; :func:`default_config` when omitted.
    """

    def __init__(self, config: StackConfig | None = None) -> None:
        self.config = config or default_config()
        self.workdir = Path(tempfile.mkdtemp(prefix="grip-e2e-airflow-"))
        self.home = self.workdir / "home"
        self.log_dir = self.workdir / "logs"
        self.task_log_dir = self.home / "logs"
        self.scratch_dags = self.workdir / "dags"
        for folder in (self.home, self.log_dir, self.scratch_dags):
            folder.mkdir(parents=True)
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self._log_server_ports = (free_port(), free_port())
        self._processes: list[_Process] = []
        self._database: Iterator[str] | None = None
        self.database_url: str | None = None
        self._client: AirflowClient | None = None

    def __enter__(self) -> AirflowStack:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def client(self) -> AirflowClient:
        """The REST client, logged in as the admin user; only after :meth:`start`."""
        if self._client is None:
            raise StackError("the Airflow stack is not started: call start() first")
        return self._client

    # -- environment --------------------------------------------------------------------------

    def env(self) -> dict[str, str]:
        """The environment of every Airflow process (inherited AIRFLOW* variables removed)."""
        config = self.config
        if self.database_url is None:
            raise StackError("the metadata database is not created yet")
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("AIRFLOW_", "AIRFLOW__"))
        }
        bundles = [
            {
                "name": PROJECT_BUNDLE,
                "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle",
                "kwargs": {"path": str(config.dags_folder)},
            },
            {
                "name": SCRATCH_BUNDLE,
                "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle",
                "kwargs": {"path": str(self.scratch_dags)},
            },
        ]
        env.update(
            {
                "AIRFLOW_HOME": str(self.home),
                "PYTHONUNBUFFERED": "1",
                "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
                "AIRFLOW__CORE__PARALLELISM": str(config.parallelism),
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__CORE__DAGS_FOLDER": str(config.dags_folder),
                "AIRFLOW__CORE__PLUGINS_FOLDER": str(config.plugins_folder),
                "AIRFLOW__CORE__FERNET_KEY": self._fernet_key,
                "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.base_url}/execution/",
                "AIRFLOW__CORE__MIN_SERIALIZED_DAG_UPDATE_INTERVAL": "5",
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{config.admin_user}:admin",
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(self._passwords_file),
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": self.database_url,
                "AIRFLOW__API__HOST": "127.0.0.1",
                "AIRFLOW__API__PORT": str(self.port),
                "AIRFLOW__API__BASE_URL": self.base_url,
                "AIRFLOW__API__WORKERS": "1",
                "AIRFLOW__API__EXPOSE_STACKTRACE": "True",
                "AIRFLOW__API__SECRET_KEY": self._secret_key,
                "AIRFLOW__API_AUTH__JWT_SECRET": self._jwt_secret,
                "AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST": json.dumps(bundles),
                "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": str(config.refresh_interval),
                "AIRFLOW__DAG_PROCESSOR__BUNDLE_REFRESH_CHECK_INTERVAL": "1",
                "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": str(
                    config.min_file_process_interval
                ),
                "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "1",
                "AIRFLOW__DAG_PROCESSOR__PRINT_STATS_INTERVAL": "300",
                "AIRFLOW__LOGGING__COLORED_CONSOLE_LOG": "False",
                "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(self._log_server_ports[0]),
                "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(self._log_server_ports[1]),
            }
        )
        for conn_id, uri in config.connections.items():
            env[f"AIRFLOW_CONN_{conn_id.upper()}"] = uri
        env.update(config.extra_env)
        return env

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> None:
        """Create the database, migrate it, start the three processes and wait until ready.

        Raises:
            StackError: when a step fails or the stack is not ready in ``startup_timeout``
                seconds; everything already started is stopped first.
        """
        from cryptography.fernet import Fernet

        started = time.monotonic()
        deadline = started + self.config.startup_timeout
        self._fernet_key = Fernet.generate_key().decode()
        self._secret_key = secrets.token_urlsafe(16)
        self._jwt_secret = secrets.token_urlsafe(32)
        self._passwords_file = self.home / "simple_auth_manager_passwords.json"
        self._passwords_file.write_text(
            json.dumps({self.config.admin_user: self.config.admin_password})
        )
        _drop_orphaned_databases(self.config.pg_admin_url)
        name = f"{DATABASE_PREFIX}{os.getpid()}_{secrets.token_hex(3)}"
        self._database = scratch_database(
            self.config.pg_admin_url, name, create_sql="CREATE DATABASE {name}"
        )
        self.database_url = next(self._database)
        try:
            self._migrate(timeout=deadline - time.monotonic())
            for component in COMPONENTS:
                self._spawn(component)
            self._client = AirflowClient(
                self.base_url, self.config.admin_user, self.config.admin_password
            )
            self._client.before_answer = self.wait_park_acknowledged
            self._wait_ready(timeout=deadline - time.monotonic())
            for pool, slots in self.config.pools.items():
                self.client.set_pool(pool, slots)
        except StackError as err:
            tails = self.log_tails()
            self.stop()
            raise StackError(f"{err}\n{tails}") from err
        except BaseException:
            self.stop()
            raise
        logger.info(
            "Airflow stack ready at %s in %.1f s", self.base_url, time.monotonic() - started
        )

    def _airflow(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "airflow", *args]

    def _migrate(self, timeout: float) -> None:
        log_path = self.log_dir / "db-migrate.log"
        with log_path.open("wb") as log:
            try:
                result = subprocess.run(
                    self._airflow("db", "migrate"),
                    env=self.env(),
                    cwd=self.workdir,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    timeout=timeout,
                    check=False,
                )
            except subprocess.TimeoutExpired as err:
                raise StackError(f"airflow db migrate took over {timeout:.0f} s") from err
        if result.returncode != 0:
            raise StackError(
                f"airflow db migrate exited {result.returncode}:\n{_tail(log_path, 40)}"
            )

    def _spawn(self, component: str) -> None:
        log_path = self.log_dir / f"{component}.log"
        with log_path.open("wb") as log:
            popen = subprocess.Popen(
                self._airflow(component),
                env=self.env(),
                cwd=self.workdir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                # NOTE: preexec_fn is safe here: the test process starts no threads of its own.
                preexec_fn=_die_with_parent,
            )
        self._processes.append(_Process(component, popen, log_path))
        logger.info("Started airflow %s (pid %s), log %s", component, popen.pid, log_path)

    def check_alive(self) -> None:
        """Raise StackError naming the first Airflow process that has exited, with its log."""
        for process in self._processes:
            code = process.popen.poll()
            if code is not None:
                raise StackError(
                    f"airflow {process.name} exited with {code}:\n{_tail(process.log_path, 40)}"
                )

    def _wait_ready(self, timeout: float) -> None:
        def probe() -> dict[str, Any] | None:
            self.check_alive()
            try:
                health = self.client.health()
            except requests.RequestException:
                return None
            healthy = all(
                health.get(part, {}).get("status") == "healthy"
                for part in ("metadatabase", "scheduler", "dag_processor")
            )
            return health if healthy else None

        _wait_for(
            "the api-server, scheduler and dag-processor to be healthy",
            probe,
            timeout=timeout,
            interval=1.0,
        )
        self.client.token()

    def stop(self) -> None:
        """Stop every process (SIGTERM to its group, then SIGKILL) and drop the database."""
        for process in reversed(self._processes):
            _stop_group(process)
        self._processes.clear()
        if self._database is not None:
            database, self._database = self._database, None
            with contextlib.suppress(StopIteration):
                next(database)
            self.database_url = None
        if os.environ.get("GRIP_E2E_KEEP_LOGS") != "1":
            shutil.rmtree(self.workdir, ignore_errors=True)

    def wait_park_acknowledged(self, ti: Mapping[str, Any], timeout: float = 60.0) -> None:
        """Wait until the scheduler has processed the executor event of a parked task instance.

        The scheduler logs ``TaskInstance Finished: ... ti_id=<id>, ... state=awaiting_input``
        for the try once the workload that parked it is done; answering before that line races
        Airflow 3.3.2's event handling (see :meth:`AirflowClient.answer_hitl`).

        Args:
            ti: The task instance record from the REST API (``id`` and ``try_number``).
            timeout: Hard limit in seconds.
        """
        scheduler_log = self.log_dir / "scheduler.log"
        needles = (
            "TaskInstance Finished:",
            f"ti_id={ti['id']},",
            "state=awaiting_input,",
            f"try_number={ti['try_number']},",
        )

        def probe() -> bool | None:
            self.check_alive()
            text = scheduler_log.read_text(errors="replace")
            found = any(all(n in line for n in needles) for line in text.splitlines())
            return True if found else None

        _wait_for(
            f"the scheduler to acknowledge the park of task instance {ti['id']}",
            probe,
            timeout=timeout,
            interval=0.2,
        )

    # -- helpers for tests --------------------------------------------------------------------

    def write_dag(self, filename: str, source: str) -> Path:
        """Write a DAG file into the ``e2e-scratch`` bundle; return its path.

        ``source`` is dedented. The dag-processor lists the folder every ``refresh_interval``
        seconds; follow with :meth:`AirflowClient.wait_dag_parsed`.
        """
        path = self.scratch_dags / filename
        tmp = path.with_suffix(".tmp")
        tmp.write_text(textwrap.dedent(source))
        tmp.replace(path)
        return path

    def log_tails(self, lines: int = 60, task_logs: int = 2) -> str:
        """The last ``lines`` lines of each process log and of the newest task logs."""
        parts = []
        for path in sorted(self.log_dir.glob("*.log")):
            parts.append(f"----- {path.name} (last {lines} lines) -----\n{_tail(path, lines)}")
        if self.task_log_dir.exists():
            newest = sorted(
                (p for p in self.task_log_dir.rglob("*.log") if "dag_processor" not in p.parts),
                key=lambda p: p.stat().st_mtime,
            )[-task_logs:]
            for path in newest:
                rel = path.relative_to(self.task_log_dir)
                parts.append(
                    f"----- task log {rel} (last {lines} lines) -----\n{_tail(path, lines)}"
                )
        return "\n".join(parts)


def _drop_orphaned_databases(admin_url: str) -> None:
    """Drop metadata databases left by earlier sessions whose test process no longer runs.

    A session killed with SIGKILL cannot drop its database; the name carries the pid.
    """
    import sqlalchemy as sa

    engine = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            names = conn.exec_driver_sql(
                "SELECT datname FROM pg_database WHERE datname LIKE %(prefix)s",
                {"prefix": f"{DATABASE_PREFIX}%"},
            ).scalars()
            for name in list(names):
                pid = name[len(DATABASE_PREFIX) :].split("_")[0]
                if pid.isdigit() and not Path(f"/proc/{pid}").exists():
                    logger.info("Dropping metadata database %s of a dead session", name)
                    conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    except sa.exc.OperationalError:
        # NOTE: an unreachable server is reported by scratch_database() right after.
        return
    finally:
        engine.dispose()


def _stop_group(process: _Process, grace: float = 15.0) -> None:
    popen = process.popen
    if popen.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(popen.pid, signal.SIGTERM)
        try:
            popen.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            logger.warning("airflow %s ignored SIGTERM for %.0f s; killing", process.name, grace)
    # NOTE: the group may outlive its leader (task runners, parsing children): always kill it.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(popen.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        popen.wait(timeout=5)


# -- pytest plugin ----------------------------------------------------------------------------

_RUNNING: list[AirflowStack] = []


@pytest.fixture(scope="session")
def airflow_stack_config() -> StackConfig:
    """The configuration of the session's stack; override it in a conftest to add environment."""
    return default_config()


@pytest.fixture(scope="session")
def airflow_stack(airflow_stack_config: StackConfig) -> Iterator[AirflowStack]:
    """A started :class:`AirflowStack`, shared by every test of the session."""
    stack = AirflowStack(airflow_stack_config)
    try:
        stack.start()
    except StackError as err:
        pytest.fail(f"the Airflow stack did not start: {err}", pytrace=False)
    _RUNNING.append(stack)
    try:
        yield stack
    finally:
        _RUNNING.remove(stack)
        stack.stop()


@pytest.fixture(scope="session")
def airflow(airflow_stack: AirflowStack) -> AirflowClient:
    """The REST client of the session's Airflow stack."""
    return airflow_stack.client


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Attach the Airflow logs to the report of a test that failed while the stack ran."""
    report = yield
    if report.failed and _RUNNING:
        for stack in _RUNNING:
            report.sections.append((f"Airflow logs ({stack.workdir})", stack.log_tails()))
    return report


__all__ = [
    "AirflowClient",
    "AirflowStack",
    "StackConfig",
    "StackError",
    "airflow",
    "airflow_stack",
    "airflow_stack_config",
    "default_config",
    "pytest_runtest_makereport",
]
