"""The sandbox's FastAPI app: Grip's registration endpoints, the log, the page and the switches."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from grip.errors import ConfigError
from sandbox.config import Application, SandboxConfig
from sandbox.faults import DROP, PASS, RATE_LIMITED, Faults
from sandbox.page import render_page
from sandbox.rules import Rejected, check_push
from sandbox.store import Store

logger = logging.getLogger(__name__)

API_PREFIX = "/1/"
DETAIL_DEFAULT_LIMIT = 100
DETAIL_MAX_LIMIT = 1000
LOG_DEFAULT_LIMIT = 100
LOG_MAX_LIMIT = 10000
# Set by sandbox.server's protocol: closes the TCP connection without an answer.
ABORT_EXTENSION = "sandbox.abort"
ARRIVED_EXTENSION = "sandbox.arrived"
"""The event loop's clock when the request's first bytes were parsed (set by sandbox.server)."""
NOTE_KEY = "sandbox.note"

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_FAULT_MESSAGES = {
    500: "internal server error (sandbox fault)",
    502: "bad gateway (sandbox fault)",
    503: "service unavailable (sandbox fault)",
}


class SandboxState:
    """What every request of one sandbox shares.

    Args:
        config: Applications, start fault switches and database path.
        store: The SQLite store; one is opened on ``config.db`` when not given.
    """

    def __init__(self, config: SandboxConfig, store: Store | None = None):
        self.config = config
        self.apps_by_token = config.by_token()
        self.apps_by_id = {app.id: app for app in config.applications}
        self.store = store if store is not None else Store(config.db)
        self.faults = Faults(config.faults)


def _json(payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
    return Response(body, status_code=status, media_type="application/json", headers=headers)


def _fail(status: int, message: str) -> Response:
    return _json({"success": False, "message": message}, status)


def _utc(stamp: float) -> str:
    whole = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(stamp))
    return f"{whole}.{int(stamp % 1 * 1000):03d}Z"


def _note(request: Request) -> dict[str, Any]:
    note = request.scope.get(NOTE_KEY)
    if note is None:
        note = {}
        request.scope[NOTE_KEY] = note
    return note


def _authenticate(request: Request, state: SandboxState) -> Application | Response:
    header = request.headers.get("authorization")
    if not header:
        return _fail(401, "the Authorization header is missing; send 'Bearer <token>'")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return _fail(401, "the Authorization header must be 'Bearer <token>'")
    app = state.apps_by_token.get(token.strip())
    if app is None:
        return _fail(401, "the token is unknown; copy it from the API Tokens page")
    return app


def _int_param(request: Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise Rejected(f"{name} must be a whole number from {low} to {high}, got {raw!r}") from None
    if not low <= value <= high:
        raise Rejected(f"{name} must be from {low} to {high}, got {value}")
    return value


class FaultsAndLog:
    """ASGI layer over the API routes (``/1/...``): applies the fault switches, logs each request.

    Routes outside ``/1/`` pass straight through, unlogged and never faulted.
    """

    def __init__(self, app: ASGIApp, state: SandboxState):
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(API_PREFIX):
            await self.app(scope, receive, send)
            return
        when = _utc(time.time())
        decision = self.state.faults.decide()
        note: dict[str, Any] = {}
        scope[NOTE_KEY] = note
        deadline = None
        if decision.delay_s:
            # The delay runs from the request's arrival to its answer, like a network round
            # trip: the sandbox's own work happens inside it rather than after it, so many
            # requests in flight are not slowed by one event loop taking them in turn.
            loop = asyncio.get_running_loop()
            arrived = scope.get("extensions", {}).get(ARRIVED_EXTENSION) or loop.time()
            deadline = arrived + decision.delay_s
            send = _held_until(deadline, send)

        # NOTE: each request's log line is written before the first byte of its answer (or the
        # drop), so a client that has seen the answer always finds the line in the log.
        if decision.outcome == PASS:
            await self._pass(scope, receive, send, when, note, decision.slow_s)
            return
        note["registration_id"] = _peek_registration_id(await _read_body(receive))
        if decision.outcome == RATE_LIMITED:
            self._record(scope, when, 429, note, "rate limited")
            await self._rate_limited(send)
        elif decision.outcome == DROP:
            self._record(scope, when, None, note, "dropped connection")
            if deadline is not None:
                await _sleep_until(deadline)
            await self._drop(scope, receive, send)
        else:
            assert isinstance(decision.outcome, int)
            status = decision.outcome
            self._record(scope, when, status, note, f"fault {status}")
            await _send_json(send, status, _fail_body(_FAULT_MESSAGES[status]))

    def _record(
        self,
        scope: Scope,
        when: str,
        status: int | None,
        note: dict[str, Any],
        reason: str | None = None,
    ) -> None:
        self.state.store.log(
            when,
            scope["method"],
            scope["path"],
            status,
            note.get("registration_id"),
            reason if reason is not None else note.get("reason"),
        )

    async def _pass(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        when: str,
        note: dict[str, Any],
        slow_s: float,
    ) -> None:
        started = False

        async def capture(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                self._record(scope, when, message["status"], note)
                if slow_s:
                    await asyncio.sleep(slow_s)
            await send(message)

        try:
            await self.app(scope, receive, capture)
        except Exception:
            if not started:
                self._record(scope, when, 500, note, "internal error of the sandbox")
            raise

    async def _rate_limited(self, send: Send) -> None:
        settings = self.state.faults.settings
        headers = []
        retry_after = self.state.faults.retry_after_header()
        if retry_after is not None:
            headers.append((b"retry-after", retry_after.encode()))
        rps = f"{settings.rate_limit_rps:g}"
        message = f"too many requests: the limit is {rps} per second; slow down and retry"
        await _send_json(send, 429, _fail_body(message), headers)

    async def _drop(self, scope: Scope, receive: Receive, send: Send) -> None:
        abort = scope.get("extensions", {}).get(ABORT_EXTENSION)
        if abort is None:
            # NOTE: only sandbox.server's protocol can close a connection without an answer;
            # under another server a drop becomes a 500 that says so.
            logger.warning("drop_share needs the sandbox's own server; answering 500 instead")
            await _send_json(send, 500, _fail_body("drop requested but the server cannot drop"))
            return
        abort()
        try:
            async with asyncio.timeout(5):
                while (await receive())["type"] != "http.disconnect":
                    pass
        except TimeoutError:
            logger.warning("the server did not report the dropped connection as closed")


async def _sleep_until(deadline: float) -> None:
    remaining = deadline - asyncio.get_running_loop().time()
    if remaining > 0:
        await asyncio.sleep(remaining)


def _held_until(deadline: float, send: Send) -> Send:
    """Wrap ``send`` so that an answer does not start before the loop's clock reads ``deadline``."""

    async def held(message: Message) -> None:
        if message["type"] == "http.response.start":
            await _sleep_until(deadline)
        await send(message)

    return held


async def _read_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _peek_registration_id(body: bytes) -> str | None:
    if not body:
        return None
    try:
        decoded = json.loads(body)
    except ValueError:
        return None
    if isinstance(decoded, dict) and isinstance(decoded.get("registration_id"), str):
        return str(decoded["registration_id"])
    return None


def _fail_body(message: str) -> bytes:
    return json.dumps({"success": False, "message": message}).encode()


async def _send_json(
    send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def create_app(config: SandboxConfig, store: Store | None = None) -> FastAPI:
    """Build the sandbox app for ``config``.

    Args:
        config: Applications, start fault switches and database path.
        store: An open store to use instead of opening ``config.db``.

    Returns:
        The FastAPI app; its ``state.sandbox`` is the shared :class:`SandboxState`.
    """
    state = SandboxState(config, store)
    api = FastAPI(title="Grip API sandbox", docs_url=None, redoc_url=None, openapi_url=None)
    api.state.sandbox = state

    @api.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        message = "no such endpoint" if exc.status_code == 404 else str(exc.detail)
        _note(request)["reason"] = message
        return _fail(exc.status_code, f"{message}: {request.method} {request.url.path}")

    async def register(request: Request) -> Response:
        app = _authenticate(request, state)
        note = _note(request)
        if isinstance(app, Response):
            note["reason"] = "unauthorised"
            return app
        raw = await request.body()
        try:
            try:
                body = json.loads(raw)
            except ValueError:
                raise Rejected("the body is not valid JSON; send one JSON object") from None
            push = check_push(body, app)
        except Rejected as err:
            note["registration_id"] = err.registration_id
            note["reason"] = err.message
            return _fail(400, err.message)
        note["registration_id"] = push.registration_id
        result = state.store.upsert(app.id, push)
        note["reason"] = result.reason
        return _json(
            {
                "success": True,
                "data": {
                    "id": result.id,
                    "uri": f"/1/thing/{result.id}",
                    "created": result.created,
                },
            }
        )

    # NOTE: a plain Starlette route: the API's hottest path skips FastAPI's dependency solving,
    # which takes a sixth of the sandbox's time per request and has nothing to solve here.
    api.add_route("/1/thing/register", register, methods=["POST"])

    @api.get("/1/thing/register/detail")
    async def detail(request: Request) -> Response:
        app = _authenticate(request, state)
        if isinstance(app, Response):
            _note(request)["reason"] = "unauthorised"
            return app
        try:
            page = _int_param(request, "page", 1, 1, 10**9)
            limit = _int_param(request, "limit", DETAIL_DEFAULT_LIMIT, 1, DETAIL_MAX_LIMIT)
        except Rejected as err:
            _note(request)["reason"] = err.message
            return _fail(400, err.message)
        return _json({"success": True, "data": state.store.page(app.id, page, limit)})

    @api.get("/1/thing/{thing_id}")
    async def thing(request: Request, thing_id: str) -> Response:
        app = _authenticate(request, state)
        if isinstance(app, Response):
            _note(request)["reason"] = "unauthorised"
            return app
        profile = state.store.get(app.id, int(thing_id)) if thing_id.isdigit() else None
        if profile is None:
            message = f"thing {thing_id} not found in application {app.id}"
            _note(request)["reason"] = message
            return _fail(404, message)
        _note(request)["registration_id"] = profile["registration_id"]
        return _json({"success": True, "data": profile})

    @api.get("/_sandbox/health")
    async def health() -> Response:
        return _json({"ok": True})

    @api.get("/_sandbox/settings")
    async def get_settings() -> Response:
        return _json(state.faults.settings.model_dump())

    @api.post("/_sandbox/settings")
    async def post_settings(request: Request) -> Response:
        try:
            changes = json.loads(await request.body() or b"{}")
        except ValueError:
            return _fail(400, "the body is not valid JSON; send an object of settings")
        if not isinstance(changes, dict):
            return _fail(400, 'send an object of settings, for example {"latency_ms": 50}')
        try:
            settings = state.faults.settings.updated(changes)
        except ConfigError as err:
            return _fail(400, str(err))
        state.faults.replace(settings)
        logger.info("fault settings now %s", settings.model_dump())
        return _json(settings.model_dump())

    @api.post("/_sandbox/reset")
    async def reset(request: Request) -> Response:
        raw = await request.body()
        try:
            options = json.loads(raw) if raw.strip() else {}
        except ValueError:
            return _fail(400, 'the body is not valid JSON; send {} or {"settings": true}')
        if not isinstance(options, dict) or set(options) - {"settings"}:
            return _fail(400, 'the only reset option is {"settings": true}')
        state.store.reset()
        if options.get("settings") is True:
            state.faults.reset()
        return _json({"ok": True, "settings": state.faults.settings.model_dump()})

    @api.get("/_sandbox/stats")
    async def stats() -> Response:
        return _json(_stats(state.store))

    @api.get("/_sandbox/log")
    async def log(request: Request) -> Response:
        try:
            limit = _int_param(request, "limit", LOG_DEFAULT_LIMIT, 1, LOG_MAX_LIMIT)
        except Rejected as err:
            return _fail(400, err.message)
        return _json(state.store.log_lines(limit))

    @api.get("/", response_class=HTMLResponse)
    async def page() -> HTMLResponse:
        return HTMLResponse(
            render_page(
                state.config.applications,
                state.store.recent(25),
                state.store.log_lines(50),
                state.store.count_profiles(),
                state.faults.settings,
            )
        )

    api.add_middleware(FaultsAndLog, state=state)
    return api


def _stats(store: Store) -> dict[str, Any]:
    counts = store.status_counts()
    answered = sorted((status, n) for status, n in counts.items() if status is not None)
    by_status = {str(status): n for status, n in answered}
    return {
        "requests": sum(counts.values()),
        "by_status": by_status,
        "dropped": counts.get(None, 0),
    }
