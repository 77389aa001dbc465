"""The client's decisions that need no server: answers classified, backoff, pacing, settings."""

from __future__ import annotations

import email.utils
import json
import random
import time

import pytest
import requests

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
    ],
)
def test_errors_without_an_answer_are_retried(error, reason):
    judgement = judge_error(error)
    assert judgement.verdict is Verdict.RETRY
    assert reason in judgement.reason


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


def test_adaptive_limiter_settles_under_the_rate_the_server_accepted():
    clock = _FakeClock()
    limiter = RateLimiter(None, adaptive=True, clock=clock, sleep=clock.sleep)
    for _ in range(200):  # 100 answers a second for two seconds
        clock.now += 0.01
        limiter.on_answer()
    limiter.on_throttled()
    assert limiter.rate == pytest.approx(97, rel=0.05)
    limiter.on_throttled()  # a second 429 from the same burst does not cut again
    assert limiter.rate == pytest.approx(97, rel=0.05)
    for _ in range(1000):  # ten clean seconds climb back
        clock.now += 0.01
        limiter.on_answer()
    assert limiter.rate > 97 * 1.1


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
