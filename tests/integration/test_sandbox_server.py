"""The sandbox as a process: start settings, config files, SQLite files and concurrent pushes."""

from __future__ import annotations

import threading
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.harness.sandbox import SandboxServer

pytestmark = pytest.mark.integration


def post(
    server: SandboxServer, body: dict[str, Any], token: str | None = None
) -> requests.Response:
    return server.session.post(
        server.base_url + "/thing/register",
        json=body,
        headers={"Authorization": f"Bearer {token or server.token}"},
        timeout=10,
    )


def test_the_demo_application_is_served_without_settings(sandbox: SandboxServer) -> None:
    output = sandbox.output()

    assert f"base URL: {sandbox.base_url}" in output
    assert "application 7001 'Demo Expo': token sandbox-demo-token" in output
    for type_id in (380, 381, 382):
        body = {"type_id": type_id, "registration_id": f"T{type_id}", "default_container_id": 90001}
        assert post(sandbox, body).status_code == 200
    body = {"type_id": 380, "registration_id": "L", "metadata_raw": {"k": {"ru-ru": "да"}}}
    assert post(sandbox, body).status_code == 200
    assert post(sandbox, {"type_id": 383, "registration_id": "X"}).status_code == 400


def test_token_flag_replaces_the_demo_token() -> None:
    with SandboxServer(["--token", "my-rehearsal-token"], token="my-rehearsal-token") as server:
        assert "token my-rehearsal-token" in server.output()
        assert post(server, {"type_id": 380, "registration_id": "A"}).status_code == 200
        demo = post(server, {"type_id": 380, "registration_id": "A"}, token="sandbox-demo-token")
        assert demo.status_code == 401


@pytest.mark.parametrize(
    ("text", "args", "match"),
    [
        (None, [], r"missing\.yaml"),
        ("applications: []\n", [], "applications"),
        (
            "applications:\n  - id: 1\n    name: A\n    token: t\n    languages: [en-gb]\n"
            "    types: {1: V}\n    containers: [1]\n    colour: red\n",
            [],
            r"config\.yaml:8.*colour",
        ),
        (
            "applications:\n"
            "  - {id: 1, name: A, token: t, languages: [en-gb], types: {1: V}, containers: [1]}\n"
            "  - {id: 2, name: B, token: t, languages: [en-gb], types: {1: V}, containers: [1]}\n",
            [],
            "share one token",
        ),
        (
            "applications:\n"
            "  - {id: 1, name: A, token: t, languages: [en-gb], types: {1: V}, containers: [1]}\n"
            "faults: {latency: 5}\n",
            [],
            "faults: unknown setting.*latency",
        ),
        (
            "applications:\n"
            "  - {id: 1, name: A, token: t, languages: [en-gb], types: {1: V}, containers: [1]}\n",
            ["--token", "x"],
            "--token is for the demo application only",
        ),
    ],
)
def test_a_bad_config_stops_the_start_with_a_pointed_message(
    tmp_path: Path, text: str | None, args: list[str], match: str
) -> None:
    config = tmp_path / ("missing.yaml" if text is None else "config.yaml")
    if text is not None:
        config.write_text(text)

    with pytest.raises(RuntimeError, match=f"exited with code 2(?s:.*){match}"):
        SandboxServer(["--config", str(config), *args], startup_timeout=10)


def test_a_database_file_keeps_profiles_and_log_across_restarts(tmp_path: Path) -> None:
    db = str(tmp_path / "sandbox.db")
    with SandboxServer(db=db) as first:
        created = post(first, {"type_id": 380, "registration_id": "KEEP", "name": "Ann"}).json()

    with SandboxServer(db=db) as second:
        again = post(second, {"type_id": 380, "registration_id": "KEEP", "job_title": "Buyer"})
        (profile,) = second.profiles()
        lines = second.log()

    assert created["data"]["created"] is True
    assert again.json()["data"] == {**created["data"], "created": False}
    assert (profile["name"], profile["job_title"]) == ("Ann", "Buyer")
    assert [line["reason"] for line in lines if line["method"] == "POST"] == [
        "updated",
        "created",
    ]


def test_concurrent_pushes_lose_no_update_and_create_no_duplicate(
    sandbox: SandboxServer,
) -> None:
    threads, shared, own = 12, 8, 10
    barrier = threading.Barrier(threads)
    answers: list[tuple[str, bool]] = []
    failures: list[BaseException] = []
    lock = threading.Lock()

    def work(worker: int) -> None:
        session = requests.Session()
        headers = {"Authorization": f"Bearer {sandbox.token}"}
        bodies = [
            {
                "type_id": 380,
                "registration_id": f"SHARED-{n}",
                f"field_{worker}": worker,
                "metadata_raw": {f"from_{worker}": {"en-gb": str(worker)}},
            }
            for n in range(shared)
        ] + [{"type_id": 381, "registration_id": f"OWN-{worker}-{n}"} for n in range(own)]
        try:
            barrier.wait(timeout=10)
            for body in bodies:
                response = session.post(
                    sandbox.base_url + "/thing/register", json=body, headers=headers, timeout=30
                )
                response.raise_for_status()
                with lock:
                    answers.append((body["registration_id"], response.json()["data"]["created"]))
        except BaseException as err:  # the main thread reports it
            failures.append(err)
        finally:
            session.close()

    workers = [threading.Thread(target=work, args=(w,)) for w in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)

    assert failures == []
    assert sandbox.stats()["by_status"] == {"200": threads * (shared + own)}
    assert len(answers) == threads * (shared + own)
    created = Counter(rid for rid, was_created in answers if was_created)
    assert set(created.values()) == {1}
    assert len(created) == shared + threads * own
    profiles = sandbox.profiles()
    assert len(profiles) == shared + threads * own
    assert len({p["registration_id"] for p in profiles}) == len(profiles)
    for profile in (p for p in profiles if p["registration_id"].startswith("SHARED-")):
        assert {f"field_{w}" for w in range(threads)} <= profile.keys()
        assert set(profile["metadata_raw"]) == {f"from_{w}" for w in range(threads)}
