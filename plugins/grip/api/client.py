"""The Grip API client: a concurrent, rate-limited, retrying push; every record ends known."""

from __future__ import annotations

import json
import logging
import queue
import random
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, cast

import requests
import urllib3
from requests.adapters import HTTPAdapter

from grip.api.outcomes import Difference, Outcome, PushOutcome, PushStats, ReadBackReport
from grip.api.ratelimit import RateLimiter
from grip.api.retry import (
    Judgement,
    Verdict,
    backoff,
    judge_answer,
    judge_error,
    judge_response,
)
from grip.api.settings import ClientSettings
from grip.errors import ApiAuthError, ApiError

log = logging.getLogger(__name__)

CONTROL_KEYS = frozenset({"default_container_id", "generate_relationships", "new_event_join_type"})
"""Payload keys that instruct Grip rather than describe the profile; not compared on read-back."""

_USER_AGENT = "grip-sync/0.1"


class GripClient:
    """Pushes payloads to ``POST /thing/register`` and reads back what Grip holds.

    One client owns one ``requests.Session`` whose connection pool matches the concurrency;
    use it as a context manager, or call :meth:`close`. Every request goes through one
    :class:`RateLimiter`, so all worker threads together keep to the configured rate.

    Example:
        >>> with GripClient(ClientSettings(base_url=url, token=token)) as client:
        ...     for outcome in client.push(payloads, total=len(payloads)):
        ...         ledger.record(outcome)
    """

    def __init__(self, settings: ClientSettings, *, seed: int | None = None):
        self.settings = settings
        self.stats = PushStats()
        self._limiter = RateLimiter(
            settings.rate_limit, burst=settings.rate_burst, adaptive=settings.adaptive
        )
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._session = requests.Session()
        adapter = HTTPAdapter(
            pool_connections=1, pool_maxsize=settings.concurrency, max_retries=0, pool_block=True
        )
        self._session.mount("http://", adapter)
        self._session.mount("https://", adapter)
        self._session.headers.update(
            {
                "Authorization": f"Bearer {settings.token}",
                "Accept": "application/json",
                "User-Agent": _USER_AGENT,
            }
        )
        self._register_url = f"{settings.root}/thing/register"
        self._detail_url = f"{settings.root}/thing/register/detail"
        self._timeout = (settings.connect_timeout, settings.read_timeout)
        # NOTE: the proxy and CA bundle variables of the environment are read once, here, not
        # on every request (requests walks os.environ twice per call otherwise).
        found = self._session.merge_environment_settings(
            settings.root, {}, None, settings.verify, None
        )
        self._proxies: dict[str, str] = dict(found["proxies"])
        self._verify: bool | str = True if found["verify"] is None else found["verify"]
        self._session.proxies, self._session.verify = self._proxies, self._verify
        self._session.trust_env = False
        self._adapter = adapter
        self._post = self._session.prepare_request(
            requests.Request(
                "POST", self._register_url, headers={"Content-Type": "application/json"}
            )
        )
        # HTTP/1.1 keeps connections open without being asked, and a small JSON answer gains
        # nothing from compression: two header lines less to write on every record.
        self._post_headers = {
            name: value
            for name, value in self._post.headers.items()
            if name.lower() not in ("connection", "accept-encoding")
        }
        self._post_target = adapter.request_url(self._post, self._proxies)
        self._pool_timeout = urllib3.Timeout(
            connect=settings.connect_timeout, read=settings.read_timeout
        )
        self._pool = self._post_pool()

    def _post_pool(self) -> urllib3.HTTPConnectionPool:
        """The session's own connection pool for ``POST /thing/register`` (proxy and TLS set)."""
        pool = self._adapter.get_connection_with_tls_context(
            self._post, self._verify, proxies=self._proxies
        )
        self._adapter.cert_verify(pool, self._register_url, self._verify, None)
        return cast(urllib3.HTTPConnectionPool, pool)

    def __repr__(self) -> str:
        return f"GripClient(base_url={self.settings.base_url!r})"

    def __enter__(self) -> GripClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._session.close()

    @property
    def rate(self) -> float | None:
        """The request rate the client paces to now (learnt in adaptive mode)."""
        return self._limiter.rate

    def push(
        self, payloads: Iterable[Mapping[str, Any]], *, total: int | None = None
    ) -> Iterator[PushOutcome]:
        """Push every payload and yield one outcome per payload as soon as it is known.

        The input is read lazily: at most ``settings.in_flight_bound`` payloads are taken from
        it and not yet answered, so an iterator of millions keeps memory flat. The first
        payload goes alone, so that a refused token costs one request, not thousands.

        Args:
            payloads: Grip payloads, each with a ``registration_id``.
            total: how many payloads the iterator holds, for progress lines; optional.

        Yields:
            One :class:`PushOutcome` per payload, in the order answers arrive.

        Raises:
            ApiAuthError: Grip answered 401 or 403; nothing more is sent.
        """
        self._stop.clear()
        progress = _Progress(self.stats, total, self.settings.progress_interval, self._limiter)
        source = iter(payloads)
        first = next(source, None)
        if first is None:
            return
        try:
            yield progress.seen(self._push_one(first))
            yield from self._push_rest(source, progress)
        finally:
            progress.summary()

    def _push_rest(
        self, source: Iterator[Mapping[str, Any]], progress: _Progress
    ) -> Iterator[PushOutcome]:
        """Push what follows the first payload with ``concurrency`` worker threads.

        The generator hands payloads to the workers through one queue and takes their outcomes
        from another, keeping at most ``in_flight_bound`` payloads between the two.
        """
        bound = self.settings.in_flight_bound
        work: queue.SimpleQueue[Mapping[str, Any] | None] = queue.SimpleQueue()
        answers: queue.SimpleQueue[PushOutcome | Exception] = queue.SimpleQueue()
        workers = [
            threading.Thread(
                target=self._work, args=(work, answers), name=f"grip-push-{n}", daemon=True
            )
            for n in range(self.settings.concurrency)
        ]
        for worker in workers:
            worker.start()
        in_flight = 0
        exhausted = False
        try:
            while True:
                while not exhausted and in_flight < bound:
                    payload = next(source, None)
                    if payload is None:
                        exhausted = True
                        break
                    work.put(payload)
                    in_flight += 1
                self._count_in_flight(in_flight)
                if not in_flight:
                    break
                try:
                    answer = answers.get(timeout=1.0)
                except queue.Empty:
                    progress.maybe_log()
                    continue
                in_flight -= 1
                if isinstance(answer, Exception):
                    raise answer
                yield progress.seen(answer)
        finally:
            # Payloads still queued are dropped unsent; requests under way end first.
            self._stop.set()
            for _ in workers:
                work.put(None)
            for worker in workers:
                worker.join()
            self._count_in_flight(0)

    def _work(
        self,
        work: queue.SimpleQueue[Mapping[str, Any] | None],
        answers: queue.SimpleQueue[PushOutcome | Exception],
    ) -> None:
        while (payload := work.get()) is not None:
            if self._stop.is_set():
                continue
            try:
                answers.put(self._push_one(payload))
            except Exception as err:  # noqa: BLE001 - the pushing generator raises it
                answers.put(err)

    def _count_in_flight(self, count: int) -> None:
        with self._lock:
            self.stats.in_flight = count
            self.stats.peak_in_flight = max(self.stats.peak_in_flight, count)

    def _push_one(self, given: Mapping[str, Any]) -> PushOutcome:
        payload = given if isinstance(given, dict) else dict(given)
        key = str(payload.get("registration_id", ""))
        started = time.monotonic()
        attempts = 0
        try:
            body = json.dumps(payload, ensure_ascii=False, allow_nan=False).encode()
        except (TypeError, ValueError) as err:
            return self._outcome(
                payload,
                key,
                Outcome.FAILED,
                None,
                attempts,
                started,
                f"payload cannot be sent as JSON ({err}); nothing was sent",
            )
        while True:
            if attempts and self._stop.is_set():
                return self._outcome(
                    payload,
                    key,
                    Outcome.FAILED,
                    None,
                    attempts,
                    started,
                    "push stopped before Grip answered",
                )
            ticket = self._limiter.acquire()
            attempts += 1
            judgement = self._attempt(body, ticket)
            log.debug(
                "record %s attempt %d: %s %s",
                key,
                attempts,
                judgement.verdict.value,
                judgement.status,
            )
            if judgement.verdict is Verdict.STORED:
                outcome = Outcome.CREATED if judgement.created else Outcome.UPDATED
                return self._outcome(
                    payload,
                    key,
                    outcome,
                    judgement.status,
                    attempts,
                    started,
                    None,
                    grip_id=judgement.grip_id,
                )
            if judgement.verdict is Verdict.REJECT:
                return self._outcome(
                    payload,
                    key,
                    Outcome.REJECTED,
                    judgement.status,
                    attempts,
                    started,
                    judgement.reason,
                )
            if judgement.verdict is Verdict.FAIL:
                return self._outcome(
                    payload,
                    key,
                    Outcome.FAILED,
                    judgement.status,
                    attempts,
                    started,
                    judgement.reason,
                )
            if judgement.verdict is Verdict.STOP:
                self._stop.set()
                raise ApiAuthError(
                    f"Grip refused the API token (HTTP {judgement.status}: {judgement.reason}); "
                    "check the token of the Grip connection, nothing more was sent",
                    status=judgement.status,
                )
            delay = self._retry_delay(judgement, attempts)
            elapsed = time.monotonic() - started
            if (
                attempts >= self.settings.max_attempts
                or elapsed + delay > self.settings.max_elapsed
            ):
                reason = f"{judgement.reason}; gave up after {attempts} attempts in {elapsed:.1f} s"
                return self._outcome(
                    payload, key, Outcome.FAILED, judgement.status, attempts, started, reason
                )
            with self._lock:
                self.stats.retries += 1
            if self._stop.wait(delay):
                continue

    def _attempt(self, body: bytes, ticket: int) -> Judgement:
        with self._lock:
            self.stats.requests += 1
        # NOTE: the record goes straight to the session's urllib3 pool. What requests adds on
        # top (cookies, redirects, hooks, a Response object) is not needed for a JSON POST and
        # costs as much CPU as the exchange itself, which decides the throughput of a push.
        headers = {**self._post_headers, "Content-Length": str(len(body))}
        try:
            answer = self._pool.urlopen(
                "POST",
                self._post_target,
                body=body,
                headers=headers,
                retries=False,
                redirect=False,
                assert_same_host=False,
                timeout=self._pool_timeout,
                preload_content=True,
            )
        except (urllib3.exceptions.HTTPError, OSError) as err:
            if isinstance(err, urllib3.exceptions.ClosedPoolError):
                self._pool = self._post_pool()
            return judge_error(err)
        judgement = judge_answer(answer.status, answer.headers, answer.data)
        if judgement.status == 429:
            with self._lock:
                self.stats.throttled += 1
            self._limiter.on_throttled(ticket)
            if judgement.retry_after is not None:
                self._limiter.pause(judgement.retry_after)
        else:
            self._limiter.on_answer()
        return judgement

    def _retry_delay(self, judgement: Judgement, attempts: int) -> float:
        if judgement.retry_after is not None:
            return min(judgement.retry_after, self.settings.max_elapsed)
        with self._lock:
            return backoff(
                attempts, self.settings.backoff_base, self.settings.backoff_max, self._rng
            )

    def _outcome(
        self,
        payload: dict[str, Any],
        key: str,
        outcome: Outcome,
        status: int | None,
        attempts: int,
        started: float,
        reason: str | None,
        *,
        grip_id: int | None = None,
    ) -> PushOutcome:
        with self._lock:
            self.stats.outcomes[outcome.value] += 1
        return PushOutcome(
            registration_id=key,
            outcome=outcome,
            status=status,
            grip_id=grip_id,
            attempts=attempts,
            latency=time.monotonic() - started,
            reason=reason,
            payload=payload,
        )

    def list_registered(self, *, page_size: int = 500) -> Iterator[dict[str, Any]]:
        """Yield every profile Grip holds for the token's application, page by page.

        The listing ends at the first page whose ``data`` is empty.
        """
        page = 1
        while True:
            body = self._get_json(self._detail_url, {"page": page, "limit": page_size})
            data = body.get("data")
            if not isinstance(data, list):
                raise ApiError(f"GET {self._detail_url} page {page}: 'data' is not a list")
            if not data:
                return
            yield from data
            page += 1

    def read_back(self, payloads: Sequence[Mapping[str, Any]]) -> ReadBackReport:
        """Compare sent payloads with what Grip holds, field by field, ``metadata_raw`` included.

        Control keys (``default_container_id`` aside, which must be among the profile's
        containers) are instructions to Grip, not profile fields, and are not compared.
        """
        wanted = {str(p.get("registration_id")): p for p in payloads}
        differences: list[Difference] = []
        found: set[str] = set()
        for profile in self.list_registered():
            key = str(profile.get("registration_id"))
            if key in wanted and key not in found:
                found.add(key)
                differences.extend(compare_profile(wanted[key], profile))
                if len(found) == len(wanted):
                    break
        missing = [key for key in wanted if key not in found]
        log.info(
            "read back %d records: %d differences, %d missing",
            len(wanted),
            len(differences),
            len(missing),
        )
        return ReadBackReport(checked=len(wanted), differences=differences, missing=missing)

    def _get_json(self, url: str, params: Mapping[str, Any]) -> dict[str, Any]:
        started = time.monotonic()
        for attempt in range(1, self.settings.max_attempts + 1):
            self._limiter.acquire()
            try:
                response = self._session.get(
                    url,
                    params=params,
                    timeout=self._timeout,
                )
            except requests.RequestException as err:
                judgement = judge_error(err)
            else:
                judgement = judge_response(response)
                if judgement.verdict is Verdict.STORED:
                    body = response.json()
                    return body if isinstance(body, dict) else {}
            if judgement.verdict is Verdict.STOP:
                raise ApiAuthError(
                    f"Grip refused the API token on GET {url} (HTTP {judgement.status})",
                    status=judgement.status,
                )
            delay = self._retry_delay(judgement, attempt)
            out_of_budget = time.monotonic() - started + delay > self.settings.max_elapsed
            if judgement.verdict is not Verdict.RETRY or out_of_budget:
                break
            if attempt < self.settings.max_attempts:
                time.sleep(delay)
        raise ApiError(f"GET {url} {dict(params)} failed: {judgement.reason}")


def normalise_metadata(value: Any) -> Any:
    """Bring ``metadata_raw`` to one shape: ``{key: [{lang: text}, ...]}``, codes lower case.

    Grip accepts a single ``{lang: text}`` map as well as a list of them; both mean the same.
    """
    if not isinstance(value, Mapping):
        return value
    out: dict[str, Any] = {}
    for key, values in value.items():
        items = [values] if isinstance(values, Mapping) else values
        if isinstance(items, list):
            out[key] = [
                {str(lang).lower(): text for lang, text in item.items()}
                if isinstance(item, Mapping)
                else item
                for item in items
            ]
        else:
            out[key] = items
    return out


def compare_profile(sent: Mapping[str, Any], stored: Mapping[str, Any]) -> list[Difference]:
    """List every field of ``sent`` that ``stored`` holds differently."""
    key = str(sent.get("registration_id"))
    differences = []
    for field, value in sent.items():
        if field == "default_container_id":
            containers = stored.get("container_ids") or []
            if value is not None and value not in containers:
                differences.append(Difference(key, "container_ids", value, containers))
            continue
        if field in CONTROL_KEYS:
            continue
        if field == "metadata_raw":
            sent_meta = normalise_metadata(value) or {}
            stored_meta = normalise_metadata(stored.get(field)) or {}
            for meta_key in sorted(set(sent_meta) | set(stored_meta)):
                if meta_key in sent_meta and sent_meta[meta_key] != stored_meta.get(meta_key):
                    differences.append(
                        Difference(
                            key,
                            f"metadata_raw.{meta_key}",
                            sent_meta[meta_key],
                            stored_meta.get(meta_key),
                        )
                    )
            continue
        if stored.get(field) != value:
            differences.append(Difference(key, field, value, stored.get(field)))
    return differences


class _Progress:
    """Logs a progress line every few seconds and a summary at the end of a push."""

    def __init__(self, stats: PushStats, total: int | None, interval: float, limiter: RateLimiter):
        self._stats = stats
        self._total = total
        self._interval = interval
        self._limiter = limiter
        self._started = time.monotonic()
        self._last_log = self._started
        self._done_at_start = stats.done
        self._base = (stats.requests, stats.retries, stats.throttled)

    def seen(self, outcome: PushOutcome) -> PushOutcome:
        self.maybe_log()
        return outcome

    def _line(self) -> tuple[str, tuple[Any, ...]]:
        elapsed = max(time.monotonic() - self._started, 1e-9)
        done = self._stats.done - self._done_at_start
        rate = done / elapsed
        requests_, retries, throttled = (
            self._stats.requests - self._base[0],
            self._stats.retries - self._base[1],
            self._stats.throttled - self._base[2],
        )
        counts = ", ".join(f"{k} {v}" for k, v in self._stats.outcomes.items() if v)
        if self._total:
            left = (self._total - done) / rate if rate > 0 else float("inf")
            return (
                "pushed %d/%d (%.0f%%) at %.1f/s; %s; %d requests, %d retries, %d throttled "
                "(429); about %s left",
                (
                    done,
                    self._total,
                    100 * done / self._total,
                    rate,
                    counts or "none yet",
                    requests_,
                    retries,
                    throttled,
                    _duration(left),
                ),
            )
        return (
            "pushed %d at %.1f/s; %s; %d requests, %d retries, %d throttled (429)",
            (done, rate, counts or "none yet", requests_, retries, throttled),
        )

    def maybe_log(self) -> None:
        now = time.monotonic()
        if now - self._last_log >= self._interval:
            self._last_log = now
            message, args = self._line()
            log.info(message, *args)

    def summary(self) -> None:
        self._stats.elapsed += time.monotonic() - self._started
        message, args = self._line()
        rate = self._limiter.rate
        paced = "unlimited" if rate is None else f"{rate:.1f}"
        log.info("push finished: %s; paced at %s/s", message % args, paced)


def _duration(seconds: float) -> str:
    if seconds == float("inf"):
        return "unknown time"
    seconds = int(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}h {seconds % 3600 // 60:02d}m"
    if seconds >= 60:
        return f"{seconds // 60}m {seconds % 60:02d}s"
    return f"{seconds}s"
