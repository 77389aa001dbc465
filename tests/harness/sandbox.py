"""The Grip API sandbox as a real subprocess for tests and benchmarks, with its pytest fixtures."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import requests

from sandbox.config import DEMO_TOKEN

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class SandboxServer:
    """``python -m sandbox`` in a subprocess on a free port, reached over real HTTP.

    Args:
        extra_args: More command-line arguments (``--config``, fault flags, ...).
        token: The token to authenticate with; the demo token unless a config file says other.
        db: SQLite file or ``:memory:``.
        startup_timeout: Seconds to wait for ``/_sandbox/health``.
    """

    def __init__(
        self,
        extra_args: Sequence[str] = (),
        *,
        token: str = DEMO_TOKEN,
        db: str = ":memory:",
        startup_timeout: float = 20.0,
    ):
        self.port = free_port()
        self.root_url = f"http://127.0.0.1:{self.port}"
        self.base_url = self.root_url + "/1"
        self.token = token
        self.args = [
            sys.executable,
            "-m",
            "sandbox",
            "--port",
            str(self.port),
            "--db",
            db,
            *extra_args,
        ]
        self.session = requests.Session()
        self._output = tempfile.NamedTemporaryFile(  # noqa: SIM115 - lives as long as the server
            prefix="sandbox-", suffix=".log", delete=False
        )
        self.process = subprocess.Popen(
            self.args,
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=self._output,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        try:
            self._wait_ready(startup_timeout)
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"the sandbox exited with code {self.process.returncode} before it was "
                    f"ready:\n{self.output()}"
                )
            try:
                if self.session.get(self.root_url + "/_sandbox/health", timeout=1).ok:
                    return
            except requests.ConnectionError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"the sandbox was not ready within {timeout:g} s:\n{self.output()}")

    def output(self) -> str:
        """What the sandbox printed so far (stdout and stderr)."""
        return Path(self._output.name).read_text(errors="replace")

    @property
    def headers(self) -> dict[str, str]:
        """The Authorization header for :attr:`token`."""
        return {"Authorization": f"Bearer {self.token}"}

    def _admin(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.session.request(method, self.root_url + path, timeout=10, **kwargs)
        response.raise_for_status()
        return response.json()

    def reset(self, settings: bool = True) -> None:
        """Empty the store and the log; with ``settings`` also restore the start settings."""
        self._admin("POST", "/_sandbox/reset", json={"settings": settings})

    def configure(self, **settings: Any) -> dict[str, Any]:
        """Change fault switches (keys of ``POST /_sandbox/settings``); return all settings."""
        result: dict[str, Any] = self._admin("POST", "/_sandbox/settings", json=settings)
        return result

    def settings(self) -> dict[str, Any]:
        """The current fault switches."""
        result: dict[str, Any] = self._admin("GET", "/_sandbox/settings")
        return result

    def log(self, limit: int = 100) -> list[dict[str, Any]]:
        """The newest ``limit`` request log lines, newest first."""
        result: list[dict[str, Any]] = self._admin("GET", "/_sandbox/log", params={"limit": limit})
        return result

    def stats(self) -> dict[str, Any]:
        """API request counts: ``requests``, ``by_status`` (status as text) and ``dropped``."""
        result: dict[str, Any] = self._admin("GET", "/_sandbox/stats")
        return result

    def profiles(self, token: str | None = None, limit: int = 1000) -> list[dict[str, Any]]:
        """Every stored profile of the token's application, read through the detail endpoint.

        These reads are API requests: they are logged, counted and subject to the fault switches.
        """
        headers = {"Authorization": f"Bearer {token or self.token}"}
        found: list[dict[str, Any]] = []
        page = 1
        while True:
            response = self.session.get(
                self.base_url + "/thing/register/detail",
                params={"page": page, "limit": limit},
                headers=headers,
                timeout=30,
            )
            response.raise_for_status()
            data = response.json()["data"]
            if not data:
                return found
            seen = {profile["id"] for profile in found}
            repeated = [profile["id"] for profile in data if profile["id"] in seen]
            if repeated:
                raise AssertionError(
                    f"page {page} of the detail endpoint repeats profile ids {repeated[:5]}; "
                    "each page must continue where the last one ended"
                )
            found.extend(data)
            page += 1

    def stop(self) -> None:
        """Terminate the sandbox (kill it if it does not stop within 5 s) and clean up."""
        self.session.close()
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        self._output.close()
        Path(self._output.name).unlink(missing_ok=True)

    def __enter__(self) -> SandboxServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@pytest.fixture(scope="session")
def sandbox_server() -> Iterator[SandboxServer]:
    """One sandbox for the whole test session (demo application, in-memory store)."""
    server = SandboxServer()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def sandbox(sandbox_server: SandboxServer) -> SandboxServer:
    """The session's sandbox with an empty store and log and its start settings."""
    sandbox_server.reset(settings=True)
    return sandbox_server
