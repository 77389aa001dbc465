"""Fault and load switches: latency, rate limit, server errors, dropped and slow answers."""

from __future__ import annotations

import math
import random
import threading
import time
from dataclasses import dataclass
from email.utils import formatdate

from sandbox.config import FaultSettings

PASS = "pass"
RATE_LIMITED = "rate limited"
DROP = "drop"


@dataclass(frozen=True, slots=True)
class Decision:
    """What happens to one API request before the rules see it.

    Attributes:
        outcome: ``pass``, ``rate limited``, ``drop``, or the status of a fault answer (500...).
        delay_s: Latency to wait before answering (fixed plus jitter).
        slow_s: Extra time to hold back an answer the rules produced.
    """

    outcome: str | int
    delay_s: float
    slow_s: float


class TokenBucket:
    """Lets ``rate`` requests per second through, up to ``burst`` at once."""

    def __init__(self, rate: float, burst: int, now: float):
        self.rate = rate
        self.burst = burst
        self.tokens = float(burst)
        self.stamp = now

    def take(self, now: float) -> bool:
        """Spend one token if there is one."""
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


class Faults:
    """The current switches and their random draws; safe to share between threads.

    Args:
        settings: The switches at start.
    """

    def __init__(self, settings: FaultSettings):
        self._lock = threading.Lock()
        self.start_settings = settings
        self.settings = settings
        self._rng = random.Random(settings.seed)
        self._bucket: TokenBucket | None = None
        self._apply(settings)

    def _apply(self, settings: FaultSettings) -> None:
        self.settings = settings
        self._rng = random.Random(settings.seed)
        self._bucket = (
            None
            if settings.rate_limit_rps is None
            else TokenBucket(settings.rate_limit_rps, settings.rate_limit_burst, time.monotonic())
        )

    def replace(self, settings: FaultSettings) -> None:
        """Switch to new settings; the rate limit starts with a full burst, draws start anew."""
        with self._lock:
            self._apply(settings)

    def reset(self) -> None:
        """Go back to the settings given at start."""
        self.replace(self.start_settings)

    def decide(self) -> Decision:
        """Draw the fate of one API request."""
        with self._lock:
            s = self.settings
            rng = self._rng
            delay_s = s.latency_ms / 1000
            if s.jitter_ms:
                delay_s += rng.uniform(0, s.jitter_ms) / 1000
            if self._bucket is not None and not self._bucket.take(time.monotonic()):
                return Decision(RATE_LIMITED, delay_s, 0.0)
            outcome: str | int = PASS
            draw = rng.random()
            for share, fault in (
                (s.drop_share, DROP),
                (s.error_500_share, 500),
                (s.error_502_share, 502),
                (s.error_503_share, 503),
            ):
                if draw < share:
                    outcome = fault
                    break
                draw -= share
            slow_s = 0.0
            if outcome == PASS and s.slow_share and rng.random() < s.slow_share:
                slow_s = s.slow_ms / 1000
            return Decision(outcome, delay_s, slow_s)

    def retry_after_header(self) -> str | None:
        """The ``Retry-After`` value a 429 carries now, or None when it carries none."""
        s = self.settings
        if s.retry_after == "none":
            return None
        if s.retry_after == "date":
            # An HTTP date counts whole seconds: round up so the wait is never shorter.
            return formatdate(math.ceil(time.time() + s.retry_after_seconds), usegmt=True)
        seconds = s.retry_after_seconds
        return str(int(seconds)) if float(seconds).is_integer() else f"{seconds:g}"
