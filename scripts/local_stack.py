"""Processes and the Airflow REST API of the local stack that ``make run`` starts."""

from __future__ import annotations

import contextlib
import ctypes
import json
import logging
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import requests

from grip.errors import GripError

log = logging.getLogger(__name__)

T = TypeVar("T")

TERMINAL_TI_STATES = frozenset({"success", "failed", "skipped", "upstream_failed", "removed"})
TERMINAL_RUN_STATES = frozenset({"success", "failed"})


class StackError(GripError):
    """A process of the local stack did not start or died, or a wait ran out of time."""


class ApiUnavailable(StackError):
    """The api-server did not answer, or answered with a server error (worth asking again)."""


def tail(path: Path, lines: int = 30) -> str:
    """The last ``lines`` lines of a log file, or a note that it does not exist."""
    if not path.exists():
        return f"({path} does not exist)"
    text = path.read_text(errors="replace").splitlines()
    return "\n".join(text[-lines:])


def wait_for(
    what: str,
    probe: Callable[[], T | None],
    *,
    timeout: float,
    interval: float = 1.0,
    detail: Callable[[], str] | None = None,
) -> T:
    """Call ``probe`` until it returns something other than None, at most ``timeout`` seconds.

    Raises:
        StackError: On timeout, naming what was awaited and adding ``detail()`` (log tails).
    """
    deadline = time.monotonic() + timeout
    last_error = ""
    while True:
        try:
            result = probe()
        except ApiUnavailable as err:  # a busy api-server: ask again until the deadline
            result, last_error = None, f"The last answer: {err}\n"
        if result is not None:
            return result
        if time.monotonic() > deadline:
            extra = last_error + (detail() if detail else "")
            raise StackError(f"gave up after {timeout:.0f} s waiting for {what}.\n{extra}".rstrip())
        time.sleep(interval)


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    """Whether something accepts connections on ``host:port`` or holds the port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM when the process that started it dies (Linux)."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM)


@dataclass
class Service:
    """A long-running process of the stack, leader of its own process group."""

    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def check(self) -> None:
        """Raise StackError with the tail of its log when the process has exited."""
        code = self.popen.poll()
        if code is not None:
            raise StackError(
                f"{self.name} exited with code {code}; the end of {self.log_path}:\n"
                f"{tail(self.log_path, 40)}"
            )

    def stop(self, grace: float = 20.0) -> None:
        """SIGTERM to the process group, SIGKILL to what is left after ``grace`` seconds."""
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                log.warning("%s ignored SIGTERM for %.0f s; killing it", self.name, grace)
        # NOTE: the group can outlive its leader (task runners, parsing children): kill it too.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=5)


class Processes:
    """Starts the stack's processes, each in a session of its own with its output in a log.

    Args:
        log_dir: Folder of the logs, one ``<name>.log`` a process.
        cwd: Working folder of every process.
    """

    def __init__(self, log_dir: Path, cwd: Path):
        self.log_dir = log_dir
        self.cwd = cwd
        self.services: list[Service] = []

    def spawn(self, name: str, argv: Sequence[str], env: Mapping[str, str]) -> Service:
        """Start a long-running process; it is stopped by :meth:`stop_all`."""
        log_path = self.log_dir / f"{name}.log"
        with log_path.open("ab") as out:
            popen = subprocess.Popen(
                list(argv),
                env=dict(env),
                cwd=self.cwd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent,  # the runner starts no threads: safe here
            )
        service = Service(name, popen, log_path)
        self.services.append(service)
        log.debug("started %s (pid %d), log %s", name, popen.pid, log_path)
        return service

    def run(self, name: str, argv: Sequence[str], env: Mapping[str, str], timeout: float) -> None:
        """Run a one-off command to its end; StackError with its log if it fails or hangs."""
        service = self.spawn(name, argv, env)
        try:
            code = service.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            service.stop(grace=5)
            raise StackError(
                f"{name} did not finish within {timeout:.0f} s; the end of {service.log_path}:\n"
                f"{tail(service.log_path, 40)}"
            ) from None
        finally:
            if service.popen.poll() is not None:
                self.services.remove(service)
        if code != 0:
            raise StackError(
                f"{name} failed with code {code}; the end of {service.log_path}:\n"
                f"{tail(service.log_path, 40)}"
            )

    def check_alive(self) -> None:
        """Raise StackError for the first process that has exited."""
        for service in self.services:
            service.check()

    def stop_all(self) -> list[str]:
        """Stop every process, the last started first; return their names."""
        stopped = []
        while self.services:
            service = self.services.pop()
            service.stop()
            stopped.append(f"{service.name} (pid {service.pid})")
        return stopped


class AirflowApi:
    """The few calls of Airflow 3.3's REST API (``/api/v2``) the local run needs.

    Args:
        base_url: Root URL of the api-server, like ``http://127.0.0.1:8080``.
        username: A user of the simple auth manager.
        password: Its password.
    """

    def __init__(self, base_url: str, username: str, password: str, timeout: float = 30.0):
        self.base_url = base_url.rstrip("/")
        self.username = username
        self._password = password
        self._timeout = timeout
        self._session = requests.Session()
        self._token: str | None = None

    def token(self) -> str:
        """A JWT from ``POST /auth/token``, fetched once and again after a 401."""
        if self._token is None:
            response = self._session.post(
                f"{self.base_url}/auth/token",
                json={"username": self.username, "password": self._password},
                timeout=self._timeout,
            )
            if response.status_code != 201:
                raise StackError(
                    f"POST /auth/token for user {self.username!r} answered "
                    f"{response.status_code}: {response.text[:300]}"
                )
            self._token = str(response.json()["access_token"])
        return self._token

    def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        params: Mapping[str, Any] | None = None,
        expect: Collection[int] = (200,),
    ) -> requests.Response:
        """An authenticated call of ``/api/v2{path}``; StackError unless the status is expected.

        A GET is asked up to three times while the api-server does not answer or answers 5xx
        (a SQLite metadata database is sometimes busy); then, as for other methods, the error
        is :class:`ApiUnavailable`.
        """
        url = f"{self.base_url}/api/v2{path}"
        attempts = 3 if method == "GET" else 1
        for attempt in range(1, attempts + 1):
            try:
                response = self._send(method, url, body, params)
            except requests.RequestException as err:
                if attempt < attempts:
                    time.sleep(2)
                    continue
                raise ApiUnavailable(f"{method} /api/v2{path}: no answer ({err})") from err
            if response.status_code >= 500 and attempt < attempts:
                time.sleep(2)
                continue
            break
        if response.status_code >= 500:
            raise ApiUnavailable(
                f"{method} /api/v2{path} answered {response.status_code}: {response.text[:500]}"
            )
        if response.status_code not in expect:
            raise StackError(
                f"{method} /api/v2{path} answered {response.status_code}: {response.text[:500]}"
            )
        return response

    def _send(
        self, method: str, url: str, body: Any, params: Mapping[str, Any] | None
    ) -> requests.Response:
        """One request with the token; a 401 (expired token) fetches a new one and asks again."""
        for attempt in (1, 2):
            response = self._session.request(
                method,
                url,
                json=body,
                params=params,
                headers={"Authorization": f"Bearer {self.token()}"},
                timeout=self._timeout,
            )
            if response.status_code != 401 or attempt == 2:
                break
            self._token = None
        return response

    def health(self) -> dict[str, Any] | None:
        """``GET /api/v2/monitor/health``, or None while the api-server does not answer."""
        try:
            response = self._session.get(f"{self.base_url}/api/v2/monitor/health", timeout=5)
        except requests.RequestException:
            return None
        return dict(response.json()) if response.ok else None

    def set_pool(self, name: str, slots: int, description: str) -> None:
        """Create the pool, or set its slots when it exists."""
        body = {"name": name, "slots": slots, "description": description, "include_deferred": False}
        response = self.request("POST", "/pools", body=body, expect=(201, 409))
        if response.status_code == 409:
            self.request("PATCH", f"/pools/{name}", body=body, params={"update_mask": "slots"})

    def import_errors(self) -> list[dict[str, Any]]:
        return list(
            self.request("GET", "/importErrors", params={"limit": 100}).json()["import_errors"]
        )

    def dag_ready(self, dag_id: str) -> bool:
        """Whether the dag-processor has stored the DAG (its details answer)."""
        response = self.request("GET", f"/dags/{dag_id}/details", expect=(200, 404))
        return response.status_code == 200

    def unpause(self, dag_id: str) -> None:
        self.request(
            "PATCH",
            f"/dags/{dag_id}",
            body={"is_paused": False},
            params={"update_mask": "is_paused"},
        )

    def trigger(
        self, dag_id: str, conf: Mapping[str, Any] | None = None, run_id: str | None = None
    ) -> str:
        """Start a manual run now (with ``run_id`` when given); return its run id."""
        body: dict[str, Any] = {"logical_date": None, "conf": dict(conf or {})}
        if run_id:
            body["dag_run_id"] = run_id
        return str(self.request("POST", f"/dags/{dag_id}/dagRuns", body=body).json()["dag_run_id"])

    def runs(self, dag_id: str) -> list[dict[str, Any]]:
        """Every run of the DAG (up to 100), oldest first."""
        params = {"limit": 100, "order_by": "id"}
        return list(
            self.request("GET", f"/dags/{dag_id}/dagRuns", params=params).json()["dag_runs"]
        )

    def run(self, dag_id: str, run_id: str) -> dict[str, Any]:
        return dict(self.request("GET", f"/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}").json())

    def task_instance(self, dag_id: str, run_id: str, task_id: str) -> dict[str, Any] | None:
        """One task instance (not mapped), or None while it does not exist."""
        path = f"/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}/taskInstances/{task_id}"
        response = self.request("GET", path, expect=(200, 404))
        return dict(response.json()) if response.status_code == 200 else None

    def task_states(self, dag_id: str, run_id: str) -> dict[str, str | None]:
        """``{task_id or task_id[map_index]: state}`` of every task instance of the run."""
        path = f"/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}/taskInstances"
        body = self.request("GET", path, params={"limit": 100}).json()
        return {
            ti["task_id"] if ti["map_index"] < 0 else f"{ti['task_id']}[{ti['map_index']}]": (
                ti["state"]
            )
            for ti in body["task_instances"]
        }

    def xcom(self, dag_id: str, run_id: str, task_id: str, key: str = "return_value") -> Any:
        """An XCom value (JSON-decoded), or None when the task pushed none."""
        path = (
            f"/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}/taskInstances/{task_id}"
            f"/xcomEntries/{key}"
        )
        response = self.request("GET", path, params={"map_index": -1}, expect=(200, 404))
        if response.status_code == 404:
            return None
        value = response.json()["value"]
        if isinstance(value, str):
            with contextlib.suppress(ValueError):
                return json.loads(value)
        return value

    def hitl_path(self, dag_id: str, run_id: str, task_id: str) -> str:
        run = quote(run_id, safe="")
        return f"/dags/{dag_id}/dagRuns/{run}/taskInstances/{task_id}/-1/hitlDetails"

    def hitl_detail(self, dag_id: str, run_id: str, task_id: str) -> dict[str, Any]:
        """The approval request of a waiting task, and its answer once there is one."""
        return dict(self.request("GET", self.hitl_path(dag_id, run_id, task_id)).json())

    def answer(
        self,
        dag_id: str,
        run_id: str,
        task_id: str,
        option: str,
        params_input: Mapping[str, Any],
    ) -> dict[str, Any]:
        """Answer a task that awaits input, as the Required Actions page does."""
        body = {"chosen_options": [option], "params_input": dict(params_input)}
        path = self.hitl_path(dag_id, run_id, task_id)
        return dict(self.request("PATCH", path, body=body).json())
