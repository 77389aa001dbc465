"""One place that decides what an answer means: success, retry, rejection or a stop."""

from __future__ import annotations

import email.utils
import json
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any

import requests
from urllib3.exceptions import (
    ClosedPoolError,
    ConnectTimeoutError,
    NewConnectionError,
    ProtocolError,
    ProxyError,
    ReadTimeoutError,
    SSLError,
)

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
    """Classify one HTTP answer of ``POST /thing/register`` given as a ``requests`` response."""
    return judge_answer(response.status_code, response.headers, response.content, now)


def judge_answer(
    status: int, headers: Mapping[str, str], content: bytes, now: float | None = None
) -> Judgement:
    """Classify one HTTP answer of ``POST /thing/register``: its status, headers and body."""
    body = _json_or_none(content)
    if status in AUTH_STATUS:
        return Judgement(Verdict.STOP, status, _message(body, content) or "token refused")
    if status in RETRIABLE_STATUS:
        retry_after = parse_retry_after(headers.get("Retry-After"), now)
        return Judgement(Verdict.RETRY, status, f"HTTP {status}", retry_after=retry_after)
    if 400 <= status < 500:
        return Judgement(Verdict.REJECT, status, _message(body, content) or f"HTTP {status}")
    if status >= 500 or status < 200 or status >= 300:
        return Judgement(Verdict.FAIL, status, f"HTTP {status}: {_message(body, content)}")
    if not isinstance(body, dict):
        return Judgement(Verdict.RETRY, status, "answer was not a JSON envelope")
    if body.get("success") is not True:
        return Judgement(Verdict.REJECT, status, _message(body, content) or "success: false")
    data: dict[str, Any] = body["data"] if isinstance(body.get("data"), dict) else {}
    grip_id = data.get("id") if isinstance(data.get("id"), int) else None
    return Judgement(Verdict.STORED, status, grip_id=grip_id, created=data.get("created") is True)


def judge_error(error: Exception) -> Judgement:
    """Classify a request that got no HTTP answer at all.

    Takes the errors of ``requests`` and those of the ``urllib3`` pool under it alike.
    """
    name = type(error).__name__
    if isinstance(error, requests.ConnectTimeout | ConnectTimeoutError) and not isinstance(
        error, NewConnectionError
    ):
        return Judgement(Verdict.RETRY, None, "connect timeout")
    if isinstance(error, requests.Timeout | ReadTimeoutError | TimeoutError):
        return Judgement(Verdict.RETRY, None, "read timeout")
    if isinstance(error, requests.exceptions.SSLError | SSLError) and _untrusted(error):
        return Judgement(Verdict.FAIL, None, f"TLS certificate refused ({_first_line(error)})")
    if isinstance(
        error,
        requests.ConnectionError
        | requests.exceptions.ChunkedEncodingError
        | NewConnectionError
        | ProtocolError
        | ProxyError
        | SSLError
        | ClosedPoolError,
    ) or (isinstance(error, OSError) and not isinstance(error, requests.RequestException)):
        return Judgement(Verdict.RETRY, None, f"connection dropped ({name})")
    return Judgement(Verdict.FAIL, None, f"request failed ({name}: {_first_line(error)})")


def _untrusted(error: Exception) -> bool:
    """Whether a TLS error is the server's certificate failing verification (no retry helps)."""
    return "certificate verify failed" in str(error).lower()


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


def _json_or_none(content: bytes) -> Any:
    try:
        return json.loads(content)
    except ValueError:
        return None


def _message(body: Any, content: bytes) -> str:
    if isinstance(body, dict):
        for key in ("message", "error", "errors"):
            if body.get(key):
                return str(body[key])[:_REASON_LIMIT]
    return content[: _REASON_LIMIT * 4].decode("utf-8", "replace")[:_REASON_LIMIT].strip()


def _first_line(error: Exception) -> str:
    return (str(error).splitlines() or [""])[0][:_REASON_LIMIT]
