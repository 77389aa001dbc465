"""GripHook builds the client from an Airflow connection, following the provider conventions."""

from __future__ import annotations

import json

import pytest

from grip.airflow.hook import GripHook, base_url_of
from grip.api import Outcome
from grip.errors import ConfigError


def _set_connection(monkeypatch, conn_id: str, **fields) -> None:
    monkeypatch.setenv(
        f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps({"conn_type": "grip"} | fields)
    )


@pytest.mark.integration
def test_the_hook_client_pushes_to_the_connection_host(sandbox, monkeypatch):
    _set_connection(
        monkeypatch,
        "grip_default",
        host=sandbox.base_url,
        password=sandbox.token,
        extra={"concurrency": 3, "rate_limit": 50, "adaptive": "false", "max_attempts": 2},
    )
    hook = GripHook()
    settings = hook.settings()
    assert (settings.concurrency, settings.rate_limit, settings.adaptive) == (3, 50.0, False)
    assert settings.max_attempts == 2
    with hook.get_conn() as client:
        (outcome,) = client.push([{"registration_id": "H1", "type_id": 380}])
    assert outcome.outcome is Outcome.CREATED
    assert [p["registration_id"] for p in sandbox.profiles()] == ["H1"]


def test_overrides_from_the_integration_win_over_extras(monkeypatch):
    _set_connection(
        monkeypatch,
        "grip_event",
        host="https://api.example.org/1",
        password="t",
        extra={"concurrency": 3},
    )
    settings = GripHook("grip_event", concurrency=12, rate_limit=None).settings()
    assert settings.concurrency == 12
    assert settings.base_url == "https://api.example.org/1"


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"host": "https://api.example.org/1"}, "token is empty"),
        ({"host": "http://api.example.org/1", "password": "t"}, "plain http"),
        (
            {"host": "https://api.example.org/1", "password": "t", "extra": {"concurrency": "x"}},
            "extra 'concurrency' must be a number",
        ),
    ],
)
def test_a_bad_connection_names_itself(monkeypatch, fields, message):
    _set_connection(monkeypatch, "grip_bad", **fields)
    with pytest.raises(ConfigError, match=rf"connection 'grip_bad'.*{message}"):
        GripHook("grip_bad").settings()


@pytest.mark.parametrize(
    ("host", "schema", "port", "url"),
    [
        (None, None, None, "https://api-prod.grip.events/1"),
        ("https://api-prod.grip.events/1/", None, None, "https://api-prod.grip.events/1"),
        ("api-test.grip.events", None, None, "https://api-test.grip.events/1"),
        ("api-test.grip.events", "2", 8443, "https://api-test.grip.events:8443/2"),
    ],
)
def test_base_url_from_host_schema_and_port(host, schema, port, url):
    assert base_url_of(host, schema, port) == url
