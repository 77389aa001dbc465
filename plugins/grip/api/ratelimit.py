"""A request pacer shared by every worker thread, with an adaptive mode for unknown limits."""

from __future__ import annotations

import threading
import time
from collections import deque

_MIN_RATE = 0.2


class RateLimiter:
    """Paces requests to ``rate`` per second (GCRA), allowing ``burst`` back to back.

    In adaptive mode the rate is learnt: each 429 sets it just under the rate at which the
    server was still answering, and every clean second raises it by a small step, so a long
    push settles close to the server's limit with few 429s. A ``Retry-After`` pauses every
    thread until the time the server gave.
    """

    def __init__(
        self,
        rate: float | None = None,
        *,
        burst: int = 1,
        adaptive: bool = False,
        clock=time.monotonic,
        sleep=time.sleep,
    ):
        self._lock = threading.Lock()
        self._rate = rate
        self._burst = burst
        self._adaptive = adaptive
        self._clock = clock
        self._sleep = sleep
        self._tat = 0.0
        self._paused_until = 0.0
        self._answers: deque[float] = deque()
        self._last_cut = -1e9
        self._last_raise = 0.0
        self._ceiling: float | None = None

    @property
    def rate(self) -> float | None:
        return self._rate

    def acquire(self) -> None:
        """Block until the next request may start."""
        while True:
            with self._lock:
                now = self._clock()
                if now < self._paused_until:
                    wait = self._paused_until - now
                elif self._rate is None:
                    return
                else:
                    interval = 1.0 / self._rate
                    tat = max(self._tat, now)
                    allowed_at = tat - (self._burst - 1) * interval
                    if allowed_at <= now:
                        self._tat = tat + interval
                        return
                    wait = allowed_at - now
            self._sleep(min(wait, 1.0))

    def pause(self, seconds: float) -> None:
        """Hold every request back for ``seconds`` (the server's ``Retry-After``)."""
        with self._lock:
            self._paused_until = max(self._paused_until, self._clock() + seconds)

    def on_answer(self) -> None:
        """Record an answer that was not a 429; in adaptive mode, maybe raise the rate."""
        if not self._adaptive:
            return
        with self._lock:
            now = self._clock()
            self._answers.append(now)
            self._trim(now)
            if self._rate is not None and now - self._last_raise >= 1.0:
                if now - self._last_cut >= 1.5:
                    self._rate *= self._climb()
                self._last_raise = now

    def on_throttled(self) -> None:
        """Record a 429; in adaptive mode, set the rate under what the server still accepted."""
        if not self._adaptive:
            return
        with self._lock:
            now = self._clock()
            if now - self._last_cut < 1.0:
                return  # answers already in flight when the rate was cut say nothing new
            self._trim(now)
            count = len(self._answers)
            span = now - self._answers[0] if self._answers else 0.0
            accepted = count / max(span, 0.2) if count >= 3 else None
            current = self._rate
            if accepted is not None and current is None:
                # the first 429 of a push comes after a few answers: too few to trust as the
                # server's limit, so start there and keep climbing fast
                new = accepted
            elif accepted is not None and current is not None:
                new = min(current, accepted) * 0.97
                self._ceiling = accepted
            else:
                new = current * 0.5 if current is not None else 5.0
            self._rate = max(new, _MIN_RATE)
            self._last_cut = now
            self._last_raise = now

    def _climb(self) -> float:
        # Near the rate at which the last 429 came: probe gently. Far under it: climb back fast.
        # Well past it with no 429: that estimate was wrong, forget it and climb fast.
        rate, ceiling = self._rate or 0.0, self._ceiling
        if ceiling is not None and rate > 1.05 * ceiling:
            self._ceiling = ceiling = None
        if ceiling is None:
            return 1.5
        return 1.02 if rate >= 0.95 * ceiling else 1.10

    def _trim(self, now: float) -> None:
        while self._answers and now - self._answers[0] > 2.0:
            self._answers.popleft()
