"""The Grip client against the sandbox over real HTTP: outcomes, faults, budgets, read-back."""

from __future__ import annotations

import logging
import socket
import time

import pytest
import requests

from grip.api import ClientSettings, GripClient, Outcome
from grip.errors import ApiAuthError

pytestmark = pytest.mark.integration


def payload(key: str, **fields) -> dict:
    base = {
        "type_id": 380,
        "default_container_id": 90001,
        "generate_relationships": 1,
        "new_event_join_type": "join_and_patch",
        "registration_id": key,
        "first_name": "Anna",
        "last_name": "Petrova",
        "name": "Anna Petrova",
        "email": f"{key.lower()}@example.com",
        "metadata_raw": {"interest": [{"en-gb": "Leisure", "ru-ru": "Отдых"}]},
    }
    return base | fields


def client_for(sandbox, **settings) -> GripClient:
    values = {
        "base_url": sandbox.base_url,
        "token": sandbox.token,
        "concurrency": 4,
        "backoff_base": 0.01,
        "backoff_max": 0.05,
        "progress_interval": 0.5,
    } | settings
    return GripClient(ClientSettings(**values), seed=7)


def push_all(client: GripClient, payloads: list[dict]) -> dict:
    return {o.registration_id: o for o in client.push(payloads, total=len(payloads))}


def requests_made(sandbox) -> int:
    return sandbox.stats()["requests"]


def test_new_records_are_created_then_updated(sandbox):
    with client_for(sandbox) as client:
        first = push_all(client, [payload(f"V{i}") for i in range(20)])
        again = push_all(client, [payload(f"V{i}", job_title="CTO") for i in range(20)])
    assert {o.outcome for o in first.values()} == {Outcome.CREATED}
    assert {o.outcome for o in again.values()} == {Outcome.UPDATED}
    assert all(o.grip_id and o.status == 200 and o.attempts == 1 for o in first.values())
    assert first["V3"].grip_id == again["V3"].grip_id
    assert all(p["job_title"] == "CTO" for p in sandbox.profiles())


def test_rejections_carry_the_server_message_and_are_not_retried(sandbox):
    bad = [payload("R1", type_id=999), payload("R2", headline="x" * 141)]
    with client_for(sandbox) as client:
        outcomes = push_all(client, [payload("OK1"), *bad])
    assert outcomes["OK1"].outcome is Outcome.CREATED
    for key in ("R1", "R2"):
        assert outcomes[key].outcome is Outcome.REJECTED
        assert outcomes[key].status == 400
        assert outcomes[key].attempts == 1
        assert outcomes[key].reason
    assert "type_id" in outcomes["R1"].reason
    assert "headline" in outcomes["R2"].reason
    assert requests_made(sandbox) == 3


@pytest.mark.parametrize(
    ("fault", "extra"),
    [
        ({"error_500_share": 0.5}, {}),
        ({"error_502_share": 0.5}, {}),
        ({"error_503_share": 0.5}, {}),
        ({"drop_share": 0.4}, {}),
        ({"slow_share": 0.4, "slow_ms": 1500}, {"read_timeout": 0.5}),
    ],
    ids=["500", "502", "503", "dropped", "timeout"],
)
def test_transient_faults_are_retried_until_every_record_is_stored(sandbox, fault, extra):
    sandbox.configure(seed=3, **fault)
    with client_for(sandbox, max_attempts=12, **extra) as client:
        outcomes = push_all(client, [payload(f"T{i}") for i in range(30)])
        stats = client.stats
    # a slow answer times out on the client after the server stored it: the retry updates it
    assert all(o.accepted for o in outcomes.values())
    assert stats.retries > 0
    assert max(o.attempts for o in outcomes.values()) > 1
    sandbox.configure(
        error_500_share=0, error_502_share=0, error_503_share=0, drop_share=0, slow_share=0
    )
    assert len(sandbox.profiles()) == 30


def test_a_payload_that_is_not_json_fails_unsent_and_the_rest_go_on(sandbox):
    bad = payload("NAN", headline=float("nan"))
    with client_for(sandbox) as client:
        outcomes = push_all(client, [payload("OK1"), bad, payload("OK2")])

    assert outcomes["NAN"].outcome is Outcome.FAILED
    assert outcomes["NAN"].attempts == 0
    assert "JSON" in outcomes["NAN"].reason
    assert {outcomes["OK1"].outcome, outcomes["OK2"].outcome} == {Outcome.CREATED}
    assert requests_made(sandbox) == 2


def test_proxy_settings_of_the_environment_are_honoured(sandbox, monkeypatch):
    with socket.socket() as placeholder:  # a port nothing listens on: the proxy is down
        placeholder.bind(("127.0.0.1", 0))
        dead_proxy = f"http://127.0.0.1:{placeholder.getsockname()[1]}"
    monkeypatch.setenv("HTTP_PROXY", dead_proxy)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    with client_for(sandbox, max_attempts=1) as client:
        through_proxy = next(client.push([payload("PX1")]))
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    with client_for(sandbox, max_attempts=1) as client:
        direct = next(client.push([payload("PX2")]))

    assert through_proxy.outcome is Outcome.FAILED
    assert "connection" in through_proxy.reason
    assert direct.outcome is Outcome.CREATED
    assert [p["registration_id"] for p in sandbox.profiles()] == ["PX2"]


def test_a_record_that_runs_out_of_attempts_ends_failed_with_its_last_reason(sandbox):
    sandbox.configure(error_503_share=1.0)
    with client_for(sandbox, max_attempts=3) as client:
        (outcome,) = client.push([payload("F1")])
    assert outcome.outcome is Outcome.FAILED
    assert outcome.attempts == 3
    assert outcome.status == 503
    assert "HTTP 503" in outcome.reason
    assert "3 attempts" in outcome.reason
    assert requests_made(sandbox) == 3


def test_the_elapsed_budget_stops_retries_too(sandbox):
    sandbox.configure(
        rate_limit_rps=0.5, rate_limit_burst=1, retry_after="seconds", retry_after_seconds=30
    )
    with client_for(sandbox, max_attempts=10, max_elapsed=5) as client:
        started = time.monotonic()
        outcomes = push_all(client, [payload("E1"), payload("E2")])
    assert time.monotonic() - started < 5
    assert outcomes["E1"].outcome is Outcome.CREATED
    assert outcomes["E2"].outcome is Outcome.FAILED
    assert "HTTP 429" in outcomes["E2"].reason


@pytest.mark.parametrize("form", ["seconds", "date", "none"])
def test_429_is_retried_honouring_retry_after_in_each_form(sandbox, form):
    sandbox.configure(rate_limit_rps=1, rate_limit_burst=1, retry_after=form, retry_after_seconds=2)
    with client_for(
        sandbox, concurrency=2, adaptive=False, backoff_base=0.2, backoff_max=0.4, max_attempts=20
    ) as client:
        started = time.monotonic()
        outcomes = push_all(client, [payload(f"L{i}") for i in range(3)])
        elapsed = time.monotonic() - started
        throttled = client.stats.throttled
    assert {o.outcome for o in outcomes.values()} == {Outcome.CREATED}
    assert throttled >= 1
    assert sandbox.stats()["by_status"].get("429", 0) == throttled
    if form == "seconds":
        # each 429 holds every thread for the 2 s the server asked
        assert elapsed >= 2.0
    if form == "date":
        # an HTTP date has whole-second precision: at least one second is honoured
        assert elapsed >= 1.0


def test_a_refused_token_stops_the_push_after_one_request(sandbox):
    settings = ClientSettings(base_url=sandbox.base_url, token="wrong-token", concurrency=8)
    with GripClient(settings) as client, pytest.raises(ApiAuthError, match="refused the API token"):
        list(client.push(payload(f"A{i}") for i in range(1000)))
    assert requests_made(sandbox) == 1
    assert sandbox.stats()["by_status"] == {"401": 1}


def test_read_back_finds_every_record_stored_as_sent(sandbox):
    sent = [payload(f"S{i}", job_title="Buyer") for i in range(120)]
    with client_for(sandbox) as client:
        push_all(client, sent)
        report = client.read_back(sent)
        listed = list(client.list_registered(page_size=50))
    assert report.clean, report.differences[:3]
    assert report.checked == 120
    assert len(listed) == 120


def test_read_back_catches_the_admin_lock(sandbox):
    with client_for(sandbox) as client:
        push_all(client, [payload("EXH-Admin-7", job_title="Owner")])
        changed = payload("EXH-Admin-7", job_title="Founder")
        (outcome,) = client.push([changed])
        report = client.read_back([changed])
    assert outcome.outcome is Outcome.UPDATED  # Grip says success, and keeps the old profile
    assert [(d.field, d.sent, d.stored) for d in report.differences] == [
        ("job_title", "Founder", "Owner")
    ]


def test_read_back_finds_a_field_changed_on_the_server_and_a_missing_record(sandbox):
    sent = [payload("C1", company_name="Example Ltd"), payload("C2")]
    with client_for(sandbox) as client:
        push_all(client, sent[:1])
        other = requests.post(
            f"{sandbox.base_url}/thing/register",
            json=payload(
                "C1", company_name="Other Ltd", metadata_raw={"interest": {"en-gb": "Luxury"}}
            ),
            headers={"Authorization": f"Bearer {sandbox.token}"},
            timeout=10,
        )
        assert other.json()["success"] is True
        report = client.read_back(sent)
    fields = {d.field: (d.sent, d.stored) for d in report.differences}
    assert fields["company_name"] == ("Example Ltd", "Other Ltd")
    assert fields["metadata_raw.interest"][1] == [{"en-gb": "Luxury"}]
    assert report.missing == ["C2"]


def test_adaptive_mode_finds_an_unknown_limit(sandbox):
    sandbox.configure(rate_limit_rps=40, rate_limit_burst=5, retry_after="none")
    with client_for(sandbox, concurrency=8, adaptive=True, max_attempts=20) as client:
        outcomes = push_all(client, [payload(f"AD{i}") for i in range(400)])
        learnt = client.rate
        throttled = client.stats.throttled
    assert {o.outcome for o in outcomes.values()} == {Outcome.CREATED}
    # the client started with no limit at all, and ends paced near the server's 40/s
    assert learnt is not None
    assert 20 <= learnt <= 50
    assert throttled <= 0.1 * 400


def test_a_huge_input_is_pushed_with_a_bounded_number_in_flight(sandbox):
    total = 200_000
    taken = 0
    answered = 0
    widest_gap = 0

    def generate():
        nonlocal taken
        for i in range(total):
            taken += 1
            yield {"registration_id": f"G{i}", "type_id": 380}

    with client_for(sandbox, concurrency=16, max_in_flight=32, progress_interval=5) as client:
        for outcome in client.push(generate(), total=total):
            answered += 1
            widest_gap = max(widest_gap, taken - answered)
            assert outcome.outcome is Outcome.CREATED
        peak = client.stats.peak_in_flight
    assert answered == total
    assert peak <= 32
    # taken but unanswered: the ones in flight plus the one being handed over
    assert widest_gap <= 33


def test_the_token_never_reaches_a_log_line_an_error_or_a_repr(sandbox, caplog):
    token = sandbox.token
    caplog.set_level(logging.DEBUG)
    sandbox.configure(error_500_share=0.3, seed=5)
    with client_for(sandbox) as client:
        push_all(client, [payload(f"K{i}") for i in range(20)])
        client.read_back([payload("K1")])
        texts = [repr(client), repr(client.settings), str(client.settings)]
    bad = ClientSettings(base_url=sandbox.base_url, token=f"{token}-revoked")
    with GripClient(bad) as refused, pytest.raises(ApiAuthError) as raised:
        list(refused.push([payload("K99")]))
    texts += [str(raised.value), repr(raised.value), repr(refused)]
    records = [r.getMessage() for r in caplog.records]
    assert records, "expected log lines at DEBUG"
    assert any("push finished" in line for line in records)
    for text in texts + records:
        assert token not in text
