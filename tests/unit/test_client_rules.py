"""The client's decisions that need no server: answers classified, backoff, pacing, settings."""

from __future__ import annotations

import email.utils
import json
import random
import time

import pytest
import requests
from urllib3.exceptions import (
    ConnectTimeoutError,
    NewConnectionError,
    ProtocolError,
    ReadTimeoutError,
    SSLError,
)

from grip.api import ClientSettings, compare_profile, normalise_metadata
from grip.api.ratelimit import RateLimiter
from grip.api.retry import Verdict, backoff, judge_error, judge_response, parse_retry_after
from grip.errors import ConfigError


def _response(status: int, body: object = None, headers: dict[str, str] | None = None):
    response = requests.Response()
    response.status_code = status
    response._content = (
        body.encode() if isinstance(body, str) else json.dumps(body).encode() if body else b""
    )
    response.headers.update(headers or {})
    return response


@pytest.mark.parametrize(
    ("status", "body", "verdict", "reason"),
    [
        (200, {"success": True, "data": {"id": 7, "created": True}}, Verdict.STORED, None),
        (200, {"success": False, "message": "type_id 9 is unknown"}, Verdict.REJECT, "type_id 9"),
        (200, "<html>proxy</html>", Verdict.RETRY, "not a JSON envelope"),
        (400, {"success": False, "message": "headline too long"}, Verdict.REJECT, "headline"),
        (404, None, Verdict.REJECT, "HTTP 404"),
        (401, {"success": False, "message": "unknown token"}, Verdict.STOP, "unknown token"),
        (403, None, Verdict.STOP, "token refused"),
        (408, None, Verdict.RETRY, "HTTP 408"),
        (429, None, Verdict.RETRY, "HTTP 429"),
        (500, None, Verdict.RETRY, "HTTP 500"),
        (502, None, Verdict.RETRY, "HTTP 502"),
        (503, None, Verdict.RETRY, "HTTP 503"),
        (504, None, Verdict.RETRY, "HTTP 504"),
        (501, "not implemented", Verdict.FAIL, "HTTP 501"),
        (301, None, Verdict.FAIL, "HTTP 301"),  # a POST that is redirected is not followed
    ],
)
def test_each_answer_is_classified_in_one_place(status, body, verdict, reason):
    judgement = judge_response(_response(status, body))
    assert judgement.verdict is verdict
    assert judgement.status == status
    if reason:
        assert reason in judgement.reason


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (requests.ConnectTimeout(), "connect timeout"),
        (requests.ReadTimeout(), "read timeout"),
        (requests.ConnectionError(), "connection dropped"),
        (requests.exceptions.ChunkedEncodingError(), "connection dropped"),
        (ConnectTimeoutError(None, "timed out"), "connect timeout"),
        (NewConnectionError(None, "Connection refused"), "connection dropped"),
        (ReadTimeoutError(None, "/1/thing/register", "read timed out"), "read timeout"),
        (ProtocolError("Connection aborted.", ConnectionResetError(104)), "connection dropped"),
        (SSLError("EOF occurred in violation of protocol"), "connection dropped"),
        (ConnectionResetError(104, "reset by peer"), "connection dropped"),
    ],
)
def test_errors_without_an_answer_are_retried(error, reason):
    judgement = judge_error(error)
    assert judgement.verdict is Verdict.RETRY
    assert reason in judgement.reason


@pytest.mark.parametrize(
    "error",
    [
        SSLError("[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: self-signed"),
        requests.exceptions.InvalidURL("bad URL"),
    ],
)
def test_errors_no_retry_can_mend_fail_at_once(error):
    judgement = judge_error(error)
    assert judgement.verdict is Verdict.FAIL
    assert judgement.reason


def test_retry_after_in_seconds_and_as_an_http_date():
    now = time.time()
    assert parse_retry_after("70") == 70.0
    date = email.utils.formatdate(now + 30, usegmt=True)
    assert parse_retry_after(date, now) == pytest.approx(30, abs=1.5)
    assert parse_retry_after(email.utils.formatdate(now - 30, usegmt=True), now) == 0.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None


def test_backoff_grows_exponentially_with_jitter_and_a_cap():
    rng = random.Random(1)
    delays = [backoff(n, 0.5, 8.0, rng) for n in range(1, 8)]
    for attempt, delay in enumerate(delays, start=1):
        ceiling = min(8.0, 0.5 * 2 ** (attempt - 1))
        assert ceiling / 2 <= delay <= ceiling
    assert len({round(d, 6) for d in delays}) == len(delays)


class _FakeClock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_rate_limiter_paces_to_its_rate_after_the_burst():
    clock = _FakeClock()
    limiter = RateLimiter(10.0, burst=5, clock=clock, sleep=clock.sleep)
    for _ in range(5):
        limiter.acquire()
    assert clock.now == 100.0
    for _ in range(10):
        limiter.acquire()
    assert clock.now == pytest.approx(101.0, abs=0.11)


def test_rate_limiter_pause_holds_every_request():
    clock = _FakeClock()
    limiter = RateLimiter(None, clock=clock, sleep=clock.sleep)
    limiter.pause(3.0)
    limiter.acquire()
    assert clock.now >= 103.0


class _LimitedServer:
    """A server that answers ``limit`` requests a second (token bucket) and 429 to the rest."""

    def __init__(self, clock: _FakeClock, limit: float, burst: int = 10):
        self.clock = clock
        self.limit = limit
        self.burst = burst
        self.tokens = float(burst)
        self.last = clock.now

    def accepts(self) -> bool:
        now = self.clock.now
        self.tokens = min(self.burst, self.tokens + (now - self.last) * self.limit)
        self.last = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


def _push_for(limiter, server, seconds, *, client_max=800.0):
    """Push through ``limiter`` for ``seconds`` of fake time; return (answered, throttled)."""
    answered = throttled = 0
    end = server.clock.now + seconds
    while server.clock.now < end:
        ticket = limiter.acquire()
        server.clock.now += 1 / client_max  # the client cannot send faster than this
        if server.accepts():
            answered += 1
            limiter.on_answer()
        else:
            throttled += 1
            limiter.on_throttled(ticket)
    return answered, throttled


@pytest.mark.parametrize("limit", [20.0, 40.0, 200.0, 600.0])
def test_adaptive_limiter_finds_an_unknown_limit_quickly_and_settles_just_under_it(limit):
    clock = _FakeClock()
    limiter = RateLimiter(None, adaptive=True, clock=clock, sleep=clock.sleep)
    server = _LimitedServer(clock, limit)

    answered, throttled = _push_for(limiter, server, 60)

    assert answered / 60 >= 0.9 * limit
    assert throttled / (answered + throttled) <= 0.02
    assert 0.93 * limit <= limiter.rate <= 1.05 * limit


def test_a_limit_of_a_few_requests_a_second_is_found_too():
    clock = _FakeClock()
    limiter = RateLimiter(None, adaptive=True, clock=clock, sleep=clock.sleep)
    server = _LimitedServer(clock, 3.0)

    answered, throttled = _push_for(limiter, server, 120)

    # the server's burst of ten lets some more through than its rate, and finding the limit
    # costs a fixed handful of 429s: many in share where few requests are sent at all
    assert answered / 120 >= 0.9 * 3
    assert throttled <= 20
    assert 0.9 * 3 <= limiter.rate <= 1.1 * 3


def test_adaptive_limiter_follows_a_limit_that_falls_and_one_that_rises():
    clock = _FakeClock()
    limiter = RateLimiter(None, adaptive=True, clock=clock, sleep=clock.sleep)
    server = _LimitedServer(clock, 200.0)
    _push_for(limiter, server, 30)

    server.limit = 80.0
    _push_for(limiter, server, 10)
    assert 0.85 * 80 <= limiter.rate <= 80 * 1.05
    answered, throttled = _push_for(limiter, server, 30)
    assert answered / 30 >= 0.9 * 80
    assert throttled / (answered + throttled) <= 0.02

    server.limit = 300.0
    _push_for(limiter, server, 60)
    assert limiter.rate >= 0.9 * 300


def test_a_stray_429_at_a_settled_rate_cuts_it_by_a_few_percent_only():
    clock = _FakeClock()
    limiter = RateLimiter(None, adaptive=True, clock=clock, sleep=clock.sleep)
    server = _LimitedServer(clock, 200.0)
    _push_for(limiter, server, 30)
    settled = limiter.rate

    limiter.on_throttled()
    limiter.on_throttled()  # a second 429 from the same moment does not cut again

    assert 0.9 * settled <= limiter.rate < settled


def test_without_adaptive_mode_429s_leave_the_rate_alone():
    clock = _FakeClock()
    limiter = RateLimiter(50.0, clock=clock, sleep=clock.sleep)
    for _ in range(5):
        limiter.on_throttled()
        limiter.on_answer()
    assert limiter.rate == 50.0


def test_metadata_shapes_are_normalised_to_lists_with_lower_case_codes():
    single = {"scan_id": {"EN-GB": "A1"}}
    listed = {"scan_id": [{"en-gb": "A1"}]}
    assert normalise_metadata(single) == normalise_metadata(listed) == listed


def test_compare_profile_reports_each_difference_and_ignores_control_keys():
    sent = {
        "registration_id": "B1",
        "type_id": 380,
        "default_container_id": 90001,
        "generate_relationships": 1,
        "first_name": "Claudio",
        "metadata_raw": {"cat": [{"en-gb": "Leisure"}], "id": {"en-gb": "1"}},
    }
    stored = {
        "registration_id": "B1",
        "type_id": 380,
        "container_ids": [90002],
        "first_name": "Claude",
        "metadata_raw": {"cat": [{"en-gb": "Luxury"}], "id": [{"en-gb": "1"}]},
    }
    fields = {(d.field, str(d.sent), str(d.stored)) for d in compare_profile(sent, stored)}
    assert fields == {
        ("container_ids", "90001", "[90002]"),
        ("first_name", "Claudio", "Claude"),
        ("metadata_raw.cat", "[{'en-gb': 'Leisure'}]", "[{'en-gb': 'Luxury'}]"),
    }


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"base_url": "ftp://grip/1"}, "scheme and host"),
        ({"base_url": "http://api.example.org/1"}, "plain http"),
        ({"token": ""}, "token is empty"),
        ({"concurrency": 0}, "concurrency"),
        ({"max_attempts": 0}, "max_attempts"),
        ({"read_timeout": 0}, "read_timeout"),
        ({"concurrency": 8, "max_in_flight": 4}, "max_in_flight"),
    ],
)
def test_bad_settings_fail_on_construction(kwargs, message):
    values = {"base_url": "https://api.example.org/1", "token": "t0ken"} | kwargs
    with pytest.raises(ConfigError, match=message):
        ClientSettings(**values)


def test_plain_http_is_allowed_on_loopback_or_when_asked():
    ClientSettings(base_url="http://127.0.0.1:8900/1", token="t")
    ClientSettings(base_url="http://localhost:8900/1", token="t")
    ClientSettings(base_url="http://grip.internal/1", token="t", allow_http=True)


def test_settings_repr_hides_the_token():
    settings = ClientSettings(base_url="https://api.example.org/1", token="s3cr3t-token")
    assert "s3cr3t-token" not in repr(settings)
