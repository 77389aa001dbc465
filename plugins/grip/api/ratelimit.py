"""A request pacer shared by every worker thread, with an adaptive mode for unknown limits."""

from __future__ import annotations

import threading
import time
from collections import deque

_MIN_RATE = 0.2
_START = 5.0  # requests a second after a 429 that came before any answer
_WINDOW = 2.0  # seconds of answers kept to measure the rate the server answers at
_SETTLE = 0.5  # seconds after a cut in which further 429s belong to the old rate
_HALVE = 0.5  # share of a rate that met a 429 tried next when no good rate is known
_NUDGE = 0.97  # share of the rate the server still answers at, kept after a 429 at a good rate
_CLOSE = 1.03  # good and bad rates this close: the search is over
_PROBE = 1.01  # step of the occasional probe above a settled rate
_PROBE_EVERY = 10.0  # seconds at a settled rate between probes, at least
_PROBE_REQUESTS = 200  # requests at a settled rate between probes, at least
_EARLY = 3  # requests after a cut whose 429 may still be the higher rate's doing
_FORGET = 60.0  # seconds after which a rate that met a 429 may be tried again
_REACHED = 0.8  # share of the rate the answers must reach for the rate to count as good


class RateLimiter:
    """Paces requests to ``rate`` per second (GCRA), allowing ``burst`` back to back.

    In adaptive mode the rate is learnt from the server's answers. The push starts unpaced; the
    first 429 sets the rate to what the server answered so far, and from there the limiter
    searches: a rate that stays clean for a while is *good*, a rate that meets a 429 is *bad*.
    With no bad rate known yet the rate doubles; with both known it tries halfway between them,
    and falls back to the good one on a 429. Once the two are within a few percent it stays at
    the good rate and probes a little higher now and then, so a long push settles just under
    the server's limit with few 429s, and finds a limit that was raised. A ``Retry-After``
    pauses every thread until the time the server gave.
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
        self._good: float | None = None
        self._bad: float | None = None
        self._bad_at = 0.0
        self._since = 0.0
        self._last_cut = -1e9
        self._issued = 0
        self._cut_ticket = 0
        self._changed_ticket = 0
        self._rose = False

    @property
    def rate(self) -> float | None:
        return self._rate

    def acquire(self) -> int:
        """Block until the next request may start; return its ticket for :meth:`on_throttled`."""
        while True:
            with self._lock:
                now = self._clock()
                if now < self._paused_until:
                    wait = self._paused_until - now
                elif self._rate is None:
                    return self._issue()
                else:
                    interval = 1.0 / self._rate
                    tat = max(self._tat, now)
                    allowed_at = tat - (self._burst - 1) * interval
                    if allowed_at <= now:
                        self._tat = tat + interval
                        return self._issue()
                    wait = allowed_at - now
            self._sleep(min(wait, 1.0))

    def _issue(self) -> int:
        self._issued += 1
        return self._issued

    def pause(self, seconds: float) -> None:
        """Hold every request back for ``seconds`` (the server's ``Retry-After``)."""
        with self._lock:
            self._paused_until = max(self._paused_until, self._clock() + seconds)

    def on_answer(self) -> None:
        """Record an answer that was not a 429; in adaptive mode, maybe move the rate up."""
        if not self._adaptive:
            return
        with self._lock:
            now = self._clock()
            self._answers.append(now)
            self._trim(now)
            rate = self._rate
            if rate is None or now - self._since < _hold(rate):
                return
            if self._answered_rate(now) < _REACHED * rate:
                return  # the push is not reaching this rate anyway; going higher changes nothing
            self._good = rate if self._good is None else max(self._good, rate)
            if self._bad is not None and rate >= self._bad:
                self._bad = None  # clean above the rate that once met a 429: the limit rose
            self._set(now, self._next_up(rate, now))

    def on_throttled(self, ticket: int | None = None) -> None:
        """Record a 429; in adaptive mode, fall back to a rate the server accepted.

        Args:
            ticket: what :meth:`acquire` returned for the request. A 429 to a request that
                started before the last change of rate says nothing new and is ignored;
                without a ticket, 429s within half a second of that change are.
        """
        if not self._adaptive:
            return
        with self._lock:
            now = self._clock()
            if ticket is not None and ticket <= self._cut_ticket:
                return
            if ticket is None and now - self._last_cut < _SETTLE:
                return
            self._trim(now)
            rate = self._rate
            if rate is None:
                self._last_cut, self._cut_ticket = now, self._issued
                # The first 429 of the push: start from what the server answered until now.
                span = now - self._answers[0] if len(self._answers) >= 3 else 0.0
                first = len(self._answers) / max(span, 0.2) if span else _START
                self._set(now, max(first, _MIN_RATE))
                return
            if not self._rose and ticket is not None and ticket - self._changed_ticket <= _EARLY:
                # The first requests after a cut may still meet the server's bucket emptied by
                # the rate before: their 429s say nothing of the lower rate.
                return
            self._last_cut, self._cut_ticket = now, self._issued
            self._bad = rate if self._bad is None else min(self._bad, rate)
            self._bad_at = now
            # What the server still answered over the last seconds bounds the limit.
            answered = self._answered_rate(now)
            if self._good is not None and self._good >= rate:
                # A 429 at a rate once good: a stray one, or the limit fell, and how far.
                self._good = min(rate, answered) * _NUDGE
            fallback = self._good if self._good is not None else min(rate * _HALVE, answered)
            self._set(now, max(fallback, _MIN_RATE))

    def _next_up(self, rate: float, now: float) -> float:
        if self._bad is not None and now - self._bad_at >= _FORGET:
            self._bad = None  # an old 429 may have been a stray one: look above it again
        good, bad = self._good or rate, self._bad
        if bad is None:
            return rate * 2
        if bad > good * _CLOSE:
            return (good + bad) / 2
        # Settled just under the limit: stay, and probe a little above it now and then.
        probe_after = max(_PROBE_EVERY, _PROBE_REQUESTS / rate)
        return rate * _PROBE if now - self._since >= probe_after else rate

    def _set(self, now: float, rate: float) -> None:
        if rate != self._rate:
            self._rose = self._rate is not None and rate > self._rate
            self._rate = rate
            self._since = now
            self._changed_ticket = self._issued

    def _answered_rate(self, now: float) -> float:
        if len(self._answers) < 2:
            return 0.0
        return len(self._answers) / max(now - self._answers[0], _WINDOW / 2)

    def _trim(self, now: float) -> None:
        while self._answers and now - self._answers[0] > _WINDOW:
            self._answers.popleft()


def _hold(rate: float) -> float:
    """How long a rate must stay clean to count as good: half a second, or 20 requests."""
    return max(0.5, 20.0 / rate)
