"""The sandbox's fault and load switches over real HTTP, at runtime and at start."""

from __future__ import annotations

import email.utils
import re
import threading
import time
from typing import Any

import pytest
import requests

from tests.harness.sandbox import SandboxServer

pytestmark = pytest.mark.integration


def push(sandbox: SandboxServer, rid: str = "F1", **kwargs: Any) -> requests.Response:
    body = {"type_id": 380, "registration_id": rid}
    return sandbox.session.post(
        sandbox.base_url + "/thing/register",
        json=body,
        headers=sandbox.headers,
        timeout=kwargs.pop("timeout", 10),
        **kwargs,
    )


def timed_push(sandbox: SandboxServer, rid: str = "F1") -> tuple[float, requests.Response]:
    started = time.perf_counter()
    response = push(sandbox, rid)
    return time.perf_counter() - started, response


def outcomes(sandbox: SandboxServer, count: int) -> list[int | str]:
    """Status of ``count`` pushes in a row, or "drop" for a closed connection."""
    seen: list[int | str] = []
    for n in range(count):
        try:
            seen.append(push(sandbox, f"O{n}").status_code)
        except requests.ConnectionError:
            seen.append("drop")
    return seen


# --- settings endpoint ------------------------------------------------------------------------

DEFAULTS = {
    "latency_ms": 0.0,
    "jitter_ms": 0.0,
    "rate_limit_rps": None,
    "rate_limit_burst": 1,
    "retry_after": "seconds",
    "retry_after_seconds": 1.0,
    "error_500_share": 0.0,
    "error_502_share": 0.0,
    "error_503_share": 0.0,
    "drop_share": 0.0,
    "slow_share": 0.0,
    "slow_ms": 0.0,
    "seed": None,
}


def test_settings_start_at_the_defaults_and_update_partially(sandbox: SandboxServer) -> None:
    assert sandbox.settings() == DEFAULTS

    answer = sandbox.configure(latency_ms=5, seed=3)
    sandbox.configure(jitter_ms=2)

    assert answer == {**DEFAULTS, "latency_ms": 5.0, "seed": 3}
    assert sandbox.settings() == {**DEFAULTS, "latency_ms": 5.0, "jitter_ms": 2.0, "seed": 3}


@pytest.mark.parametrize(
    ("body", "match"),
    [
        ({"latency": 5}, "unknown setting.*latency; known settings: latency_ms"),
        ({"error_500_share": 1.5}, "error_500_share: .*less than or equal to 1"),
        ({"drop_share": -0.1}, "drop_share: .*greater than or equal to 0"),
        ({"error_500_share": 0.6, "error_503_share": 0.6}, "must add up to 1 or less"),
        ({"retry_after": "sometimes"}, "retry_after: .*'seconds', 'date' or 'none'"),
        ({"rate_limit_rps": 0}, "rate_limit_rps: .*greater than 0"),
        ({"rate_limit_burst": 0}, "rate_limit_burst: .*greater than or equal to 1"),
        ({"latency_ms": "slow"}, "latency_ms: .*valid number"),
        ([1], "send an object of settings"),
    ],
)
def test_bad_settings_are_refused_and_change_nothing(
    sandbox: SandboxServer, body: Any, match: str
) -> None:
    response = sandbox.session.post(sandbox.root_url + "/_sandbox/settings", json=body, timeout=10)

    assert response.status_code == 400
    assert response.json()["success"] is False
    assert re.search(match, response.json()["message"]), response.json()["message"]
    assert sandbox.settings() == DEFAULTS


def test_reset_empties_store_and_log_and_keeps_settings_unless_asked(
    sandbox: SandboxServer,
) -> None:
    push(sandbox)
    sandbox.configure(latency_ms=1)

    sandbox.reset(settings=False)

    assert sandbox.log() == []
    assert sandbox.stats() == {"requests": 0, "by_status": {}, "dropped": 0}
    assert sandbox.settings()["latency_ms"] == 1.0
    assert sandbox.profiles() == []

    sandbox.reset(settings=True)
    assert sandbox.settings() == DEFAULTS


def test_reset_refuses_unknown_options(sandbox: SandboxServer) -> None:
    response = sandbox.session.post(
        sandbox.root_url + "/_sandbox/reset", json={"everything": True}, timeout=10
    )

    assert response.status_code == 400


def test_ids_are_not_reused_after_a_reset(sandbox: SandboxServer) -> None:
    first = push(sandbox).json()["data"]["id"]
    sandbox.reset()

    second = push(sandbox).json()["data"]["id"]

    assert second > first


def test_health_and_stats(sandbox: SandboxServer) -> None:
    sandbox.configure(error_503_share=1)
    push(sandbox)
    sandbox.configure(error_503_share=0)
    push(sandbox)
    push(sandbox)

    health = sandbox.session.get(sandbox.root_url + "/_sandbox/health", timeout=10)

    assert health.json()["ok"] is True
    assert sandbox.stats() == {"requests": 3, "by_status": {"200": 2, "503": 1}, "dropped": 0}


# --- latency ----------------------------------------------------------------------------------


def test_latency_delays_every_api_answer(sandbox: SandboxServer) -> None:
    baseline, _ = timed_push(sandbox, "warm")
    sandbox.configure(latency_ms=250)

    elapsed = [timed_push(sandbox)[0] for _ in range(3)]

    assert baseline < 0.2
    assert all(0.25 <= t < 1.5 for t in elapsed), elapsed


def test_latency_runs_from_arrival_and_the_push_is_stored_within_it(sandbox: SandboxServer) -> None:
    sandbox.configure(latency_ms=600)
    answered: list[float] = []
    started = time.perf_counter()
    worker = threading.Thread(target=lambda: answered.append(timed_push(sandbox, "EARLY")[0]))
    worker.start()

    # the store is written when the request comes in; only the answer waits out the latency
    deadline = started + 0.5
    while sandbox.stats()["requests"] == 0 and time.perf_counter() < deadline:
        time.sleep(0.01)
    stored_after = time.perf_counter() - started
    worker.join(timeout=10)

    assert stored_after < 0.5
    assert [p["registration_id"] for p in sandbox.profiles()] == ["EARLY"]
    assert 0.6 <= answered[0] < 1.5


def test_jitter_spreads_the_delay(sandbox: SandboxServer) -> None:
    sandbox.configure(latency_ms=50, jitter_ms=200, seed=7)

    elapsed = [timed_push(sandbox)[0] for _ in range(10)]

    assert all(t >= 0.05 for t in elapsed), elapsed
    assert max(elapsed) - min(elapsed) > 0.08, elapsed
    assert max(elapsed) < 1.5, elapsed


def test_faults_never_touch_the_sandbox_routes(sandbox: SandboxServer) -> None:
    sandbox.configure(latency_ms=400, error_500_share=0.5, drop_share=0.5, rate_limit_rps=0.01)

    started = time.perf_counter()
    for path in ("/_sandbox/health", "/_sandbox/settings", "/_sandbox/log", "/_sandbox/stats", "/"):
        assert sandbox.session.get(sandbox.root_url + path, timeout=10).status_code == 200
    sandbox.configure(seed=1)

    assert time.perf_counter() - started < 0.4 * 3
    assert sandbox.stats()["requests"] == 0


# --- rate limit -------------------------------------------------------------------------------


def test_rate_limit_lets_a_burst_through_then_answers_429(sandbox: SandboxServer) -> None:
    sandbox.configure(rate_limit_rps=2, rate_limit_burst=3)

    statuses = [push(sandbox, f"R{n}").status_code for n in range(8)]
    time.sleep(0.6)
    after_refill = push(sandbox, "late").status_code

    assert statuses == [200, 200, 200, 429, 429, 429, 429, 429]
    assert after_refill == 200
    assert sandbox.stats()["by_status"] == {"200": 4, "429": 5}
    sandbox.configure(rate_limit_rps=None)
    assert len(sandbox.profiles()) == 4


def test_rate_limit_keeps_the_average_rate(sandbox: SandboxServer) -> None:
    sandbox.configure(rate_limit_rps=20, rate_limit_burst=1)

    started = time.perf_counter()
    ok = 0
    while time.perf_counter() - started < 1.0:
        ok += push(sandbox, f"A{ok}").status_code == 200

    assert 15 <= ok <= 23, ok


def test_a_429_says_why_and_when_to_retry_in_seconds(sandbox: SandboxServer) -> None:
    sandbox.configure(rate_limit_rps=0.1, rate_limit_burst=1, retry_after_seconds=2.5)
    push(sandbox)

    response = push(sandbox, "second")

    assert response.status_code == 429
    assert response.headers["Retry-After"] == "2.5"
    assert response.json()["success"] is False
    assert "too many requests" in response.json()["message"]
    line = sandbox.log(1)[0]
    assert (line["status"], line["registration_id"], line["reason"]) == (
        429,
        "second",
        "rate limited",
    )


def test_a_429_retry_after_defaults_to_one_second(sandbox: SandboxServer) -> None:
    sandbox.configure(rate_limit_rps=0.1)
    push(sandbox)

    assert push(sandbox).headers["Retry-After"] == "1"


def test_a_429_can_carry_an_http_date(sandbox: SandboxServer) -> None:
    sandbox.configure(rate_limit_rps=0.1, retry_after="date", retry_after_seconds=30)
    push(sandbox)

    response = push(sandbox)

    assert response.status_code == 429
    when = email.utils.parsedate_to_datetime(response.headers["Retry-After"]).timestamp()
    assert time.time() + 28 <= when <= time.time() + 32


def test_a_429_can_come_without_retry_after(sandbox: SandboxServer) -> None:
    sandbox.configure(rate_limit_rps=0.1, retry_after="none")
    push(sandbox)

    response = push(sandbox)

    assert response.status_code == 429
    assert "Retry-After" not in response.headers


def test_switching_the_rate_limit_off(sandbox: SandboxServer) -> None:
    sandbox.configure(rate_limit_rps=0.1)
    push(sandbox)
    assert push(sandbox).status_code == 429

    sandbox.configure(rate_limit_rps=None)

    assert [push(sandbox).status_code for _ in range(5)] == [200] * 5


# --- server errors, drops, slow answers -------------------------------------------------------


@pytest.mark.parametrize("status", [500, 502, 503])
def test_a_full_error_share_answers_every_request_with_that_status(
    sandbox: SandboxServer, status: int
) -> None:
    sandbox.configure(**{f"error_{status}_share": 1})

    response = push(sandbox, "E1")
    detail = sandbox.session.get(
        sandbox.base_url + "/thing/register/detail", headers=sandbox.headers, timeout=10
    )

    assert response.status_code == status
    assert detail.status_code == status
    assert response.json()["success"] is False
    assert "sandbox fault" in response.json()["message"]
    assert sandbox.log(2)[1]["reason"] == f"fault {status}"
    assert sandbox.log(2)[1]["registration_id"] == "E1"
    sandbox.configure(**{f"error_{status}_share": 0})
    assert sandbox.profiles() == []


def test_a_dropped_connection_gets_no_answer_at_all(sandbox: SandboxServer) -> None:
    sandbox.configure(drop_share=1)

    with pytest.raises(requests.ConnectionError, match="without response|aborted|reset"):
        push(sandbox, "D1")

    sandbox.configure(drop_share=0)
    assert push(sandbox, "D2").status_code == 200
    line = sandbox.log(2)[1]
    assert (line["status"], line["registration_id"], line["reason"]) == (
        None,
        "D1",
        "dropped connection",
    )
    assert sandbox.stats() == {"requests": 2, "by_status": {"200": 1}, "dropped": 1}
    assert [p["registration_id"] for p in sandbox.profiles()] == ["D2"]


def test_shares_split_the_requests(sandbox: SandboxServer) -> None:
    sandbox.configure(
        error_500_share=0.15, error_502_share=0.15, error_503_share=0.15, drop_share=0.15, seed=11
    )

    seen = outcomes(sandbox, 400)

    for outcome in (500, 502, 503, "drop"):
        # 400 draws at 15 %: 60 expected, a 5-sigma band is about 25 to 95.
        assert 25 <= seen.count(outcome) <= 95, (outcome, seen.count(outcome))
    assert 100 <= seen.count(200) <= 220
    stats = sandbox.stats()
    assert stats["dropped"] == seen.count("drop")
    assert stats["by_status"]["502"] == seen.count(502)


def test_a_seed_makes_the_draws_reproducible(sandbox: SandboxServer) -> None:
    sandbox.configure(error_500_share=0.3, drop_share=0.2, seed=1234)
    first = outcomes(sandbox, 40)
    sandbox.configure(seed=1234)
    again = outcomes(sandbox, 40)
    sandbox.configure(seed=99)
    other = outcomes(sandbox, 40)

    assert first == again
    assert first != other
    assert {200, 500, "drop"} <= set(first)


def test_a_slow_answer_is_held_back_after_the_store_is_written(sandbox: SandboxServer) -> None:
    sandbox.configure(slow_share=1, slow_ms=600)

    with pytest.raises(requests.ReadTimeout):
        push(sandbox, "S1", timeout=0.2)
    elapsed, response = timed_push(sandbox, "S2")

    assert elapsed >= 0.6
    assert response.status_code == 200
    sandbox.configure(slow_share=0)
    assert [p["registration_id"] for p in sandbox.profiles()] == ["S1", "S2"]


def test_a_slow_share_slows_only_some_answers(sandbox: SandboxServer) -> None:
    sandbox.configure(slow_share=0.5, slow_ms=150, seed=5)

    elapsed = [timed_push(sandbox, f"S{n}")[0] for n in range(20)]

    slow = sum(t >= 0.15 for t in elapsed)
    assert 3 <= slow <= 17, elapsed


# --- switches at start ------------------------------------------------------------------------


def test_fault_flags_at_start_are_the_start_settings(tmp_path: Any) -> None:
    config = tmp_path / "faults.yaml"
    config.write_text(
        "applications:\n"
        "  - {id: 5, name: Fair, token: t-5, languages: [en-gb], types: {1: V}, containers: [9]}\n"
        "faults:\n"
        "  latency_ms: 20\n"
        "  error_503_share: 1\n"
        "  retry_after: none\n"
    )
    args = ["--config", str(config), "--error-503-share", "0", "--error-502-share", "1"]
    args += ["--rate-limit-rps", "50", "--rate-limit-burst", "4", "--seed", "8"]
    with SandboxServer(args, token="t-5") as server:
        expected = {
            **DEFAULTS,
            "latency_ms": 20.0,
            "retry_after": "none",
            "error_502_share": 1.0,
            "rate_limit_rps": 50.0,
            "rate_limit_burst": 4,
            "seed": 8,
        }
        assert server.settings() == expected
        response = server.session.post(
            server.base_url + "/thing/register",
            json={"type_id": 1, "registration_id": "x"},
            headers=server.headers,
            timeout=10,
        )
        assert response.status_code == 502

        server.configure(error_502_share=0, latency_ms=0)
        server.reset(settings=True)
        assert server.settings() == expected


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (["--error-500-share", "2"], "error_500_share: .*less than or equal to 1"),
        (["--retry-after", "later"], "retry_after"),
        (["--drop-share", "0.7", "--error-503-share", "0.7"], "must add up to 1 or less"),
    ],
)
def test_bad_fault_flags_stop_the_start(args: list[str], match: str) -> None:
    with pytest.raises(RuntimeError, match=match):
        SandboxServer(args, startup_timeout=10)
