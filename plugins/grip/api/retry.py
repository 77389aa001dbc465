"""One place that decides what an answer means: success, retry, rejection or a stop."""

from __future__ import annotations

import email.utils
import random
import time
from dataclasses import dataclass
from enum import Enum
from typing import Any

import requests

RETRIABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})
AUTH_STATUS = frozenset({401, 403})
_REASON_LIMIT = 200


class Verdict(Enum):
    STORED = "stored"
    RETRY = "retry"
    REJECT = "reject"
    FAIL = "fail"
    STOP = "stop"


@dataclass(frozen=True, slots=True)
class Judgement:
    """How one attempt ended, and what to do next."""

    verdict: Verdict
    status: int | None
    reason: str | None = None
    retry_after: float | None = None
    grip_id: int | None = None
    created: bool = False


def judge_response(response: requests.Response, now: float | None = None) -> Judgement:
    """Classify one HTTP answer of ``POST /thing/register``."""
    status = response.status_code
    body = _json_or_none(response)
    if status in AUTH_STATUS:
        return Judgement(Verdict.STOP, status, _message(body, response) or "token refused")
    if status in RETRIABLE_STATUS:
        retry_after = parse_retry_after(response.headers.get("Retry-After"), now)
        return Judgement(Verdict.RETRY, status, f"HTTP {status}", retry_after=retry_after)
    if 400 <= status < 500:
        return Judgement(Verdict.REJECT, status, _message(body, response) or f"HTTP {status}")
    if status >= 500 or status < 200 or status >= 300:
        return Judgement(Verdict.FAIL, status, f"HTTP {status}: {_message(body, response)}")
    if not isinstance(body, dict):
        return Judgement(Verdict.RETRY, status, "answer was not a JSON envelope")
    if body.get("success") is not True:
        return Judgement(Verdict.REJECT, status, _message(body, response) or "success: false")
    data: dict[str, Any] = body["data"] if isinstance(body.get("data"), dict) else {}
    grip_id = data.get("id") if isinstance(data.get("id"), int) else None
    return Judgement(Verdict.STORED, status, grip_id=grip_id, created=data.get("created") is True)


def judge_error(error: requests.RequestException) -> Judgement:
    """Classify a request that got no HTTP answer at all."""
    if isinstance(error, requests.Timeout):
        kind = "connect timeout" if isinstance(error, requests.ConnectTimeout) else "read timeout"
        return Judgement(Verdict.RETRY, None, kind)
    if isinstance(error, requests.ConnectionError | requests.exceptions.ChunkedEncodingError):
        return Judgement(Verdict.RETRY, None, f"connection dropped ({type(error).__name__})")
    return Judgement(Verdict.FAIL, None, f"request failed ({type(error).__name__})")


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delta seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def backoff(attempt: int, base: float, cap: float, rng: random.Random) -> float:
    """Exponential backoff with jitter: half fixed, half random, capped."""
    ceiling = min(cap, base * (2 ** (attempt - 1)))
    return ceiling / 2 + rng.uniform(0, ceiling / 2)


def _json_or_none(response: requests.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _message(body: Any, response: requests.Response) -> str:
    if isinstance(body, dict):
        for key in ("message", "error", "errors"):
            if body.get(key):
                return str(body[key])[:_REASON_LIMIT]
    return response.text[:_REASON_LIMIT].strip()
