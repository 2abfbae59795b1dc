"""Dynamic routes (SPEC §2, §3): the route table every node keeps in sync with storage, the HTTP
proxy ``ANY /api/proxy/<name>[/<rest>]`` and WebSocket messages for ``ws_supported`` routes.

* Routes live in the storage backend (shared by every node with Redis). A change is written
  there, applied to this node's table at once, and announced with a ``RoutesChanged`` control
  message; every node (this one too) then reloads its table from storage. Tables are also
  loaded at start and reloaded when the broker resynchronises after a lost link.
* One pooled ``httpx.AsyncClient`` per node carries every proxied request.
* Idempotent methods are retried once on a connection error (never POST/PATCH).
* Each route has a circuit breaker on each node: ``breaker_failures`` consecutive connect
  errors/timeouts open it (503 at once, no backend call) for ``breaker_reset_seconds``; then
  one trial request goes through (half-open) and its outcome closes or re-opens it. Answers
  from the backend, 5xx included, count as successes: the backend is reachable.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

import httpx
import orjson

from pygw._native import Claims, ClientFrame
from pygw.core.control import RoutesChanged
from pygw.core.errors import BackendUnavailable
from pygw.http.errors import HTTPError, bad_request, not_found
from pygw.http.routing import Context
from pygw.store.base import RouteRecord
from pygw.transport.types import HTTPRequest, Response
from pygw.ws.connection import Connection
from pygw.ws.hub import ClientError

if TYPE_CHECKING:
    from pygw.gateway import Gateway

log = logging.getLogger("pygw.proxy")

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
    }
)
REQUEST_DROP = HOP_BY_HOP | {"host", "content-length", "expect", "x-user-id", "x-session-id"}
"""Never forwarded: hop-by-hop headers, Host (httpx sets the backend's), the body length (the
body is re-framed) and identity headers (only the gateway sets those)."""
RESPONSE_DROP = HOP_BY_HOP | {"content-length", "content-type", "date", "server"}
"""Not copied from the backend's answer: uWS writes its own framing, Date and Server; the
content type is passed separately."""
IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
RELOAD_RETRY_SECONDS = 1.0


class ProxyFailure(Exception):
    """The backend could not be used: ``status`` is 502, 503 or 504."""

    def __init__(self, status: int, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.retry_after = retry_after

    def http_error(self) -> HTTPError:
        headers = None
        if self.retry_after is not None:
            headers = [("Retry-After", str(max(1, int(self.retry_after + 0.999))))]
        return HTTPError(self.status, None, self.message, headers=headers)


class _TooLarge(Exception):
    pass


class CircuitBreaker:
    """closed -> (``threshold`` consecutive failures) -> open -> (``reset_after`` s) ->
    half-open: one trial request; its success closes, its failure re-opens."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"

    __slots__ = ("clock", "failures", "opened_at", "reset_after", "state", "threshold", "trial")

    def __init__(
        self, threshold: int, reset_after: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.threshold = threshold
        self.reset_after = reset_after
        self.clock = clock
        self.state = self.CLOSED
        self.failures = 0
        self.opened_at = 0.0
        self.trial = False
        """A half-open trial request is in flight."""

    def allow(self) -> tuple[bool, bool]:
        """(may this request go to the backend, is it the half-open trial)."""
        if self.state == self.CLOSED:
            return True, False
        if self.state == self.OPEN:
            if self.clock() - self.opened_at < self.reset_after:
                return False, False
            self.state = self.HALF_OPEN
            self.trial = False
        if self.trial:
            return False, False
        self.trial = True
        return True, True

    def retry_after(self) -> float:
        if self.state != self.OPEN:
            return 1.0  # half-open: a trial is deciding right now
        return max(0.0, self.reset_after - (self.clock() - self.opened_at))

    def success(self, trial: bool) -> None:
        self.state = self.CLOSED
        self.failures = 0
        if trial:
            self.trial = False

    def failure(self, trial: bool) -> None:
        if trial:
            self.trial = False
            self._open()
        elif self.state == self.CLOSED:
            self.failures += 1
            if self.failures >= self.threshold:
                self._open()

    def release(self, trial: bool) -> None:
        """The request ended without telling anything about the backend (cancelled, refused
        locally): let another trial go."""
        if trial:
            self.trial = False

    def _open(self) -> None:
        self.state = self.OPEN
        self.opened_at = self.clock()
        self.failures = 0


def target_url(route: RouteRecord, rest: str, query: str) -> str:
    """``base_url`` + ``path`` [+ ``/rest``] [+ ``?query``]; ``rest`` and ``query`` stay as
    the client encoded them. Dot segments are refused: they would climb out of the route."""
    path = route.path
    if rest:
        if any(segment in (".", "..") for segment in unquote(rest).split("/")):
            raise bad_request("Invalid proxy path")
        path = path.rstrip("/") + "/" + rest
    url = route.base_url.rstrip("/") + path
    return f"{url}?{query}" if query else url


def _status_class(status: int) -> str:
    return f"{status // 100}xx"


class ProxyService:
    """This node's route table, breakers and HTTP client."""

    def __init__(self, gw: Gateway) -> None:
        self.gw = gw
        settings = gw.settings
        self.breaker_failures = settings.breaker_failures
        self.breaker_reset = settings.breaker_reset_seconds
        self.max_connections = settings.proxy_max_connections
        self.max_response_bytes = settings.proxy_max_response_bytes
        self.routes: dict[str, RouteRecord] = {}
        self.breakers: dict[str, CircuitBreaker] = {}
        self.client: httpx.AsyncClient | None = None
        self._version = 0
        """Bumped by every change applied locally; a reload that raced one is redone."""
        self._dirty = False
        self._reloader: asyncio.Task[None] | None = None
        self._next_fallback = gw.hub.fallback
        gw.hub.fallback = self.ws_fallback

    # -- lifecycle ------------------------------------------------------------------------------
    async def start(self) -> None:
        self.client = httpx.AsyncClient(
            limits=httpx.Limits(
                max_connections=self.max_connections,
                max_keepalive_connections=self.max_connections,
                keepalive_expiry=30.0,
            ),
            follow_redirects=False,
            trust_env=False,
        )
        # Forward what the client sent, not httpx's defaults (User-Agent, Accept, ...).
        self.client.headers.clear()
        httpx_log = logging.getLogger("httpx")
        if httpx_log.level == logging.NOTSET:
            httpx_log.setLevel(logging.WARNING)  # not one INFO line per proxied request
        try:
            await self.reload()
        except BackendUnavailable as exc:
            log.warning("dynamic routes not loaded (%s); retrying in the background", exc)
            self.request_reload()

    async def close(self) -> None:
        if self._reloader is not None:
            self._reloader.cancel()
            self._reloader = None
        if self.client is not None:
            await self.client.aclose()
            self.client = None

    # -- the route table ------------------------------------------------------------------------
    async def reload(self) -> None:
        """Replace the table with what storage holds (redone if a local change raced it)."""
        while True:
            version = self._version
            records = await self.gw.storage.list_routes()
            if version == self._version:
                break
        self._install({r.name: r for r in records})

    def request_reload(self) -> None:
        """Reload in the background (coalesced; retried while the backend is unreachable)."""
        self._dirty = True
        if self._reloader is None or self._reloader.done():
            self._reloader = self.gw.spawn(self._reload_loop())

    async def _reload_loop(self) -> None:
        while self._dirty:
            self._dirty = False
            try:
                await self.reload()
            except BackendUnavailable as exc:
                log.warning("reloading dynamic routes failed (%s); retrying", exc)
                self._dirty = True
                await asyncio.sleep(RELOAD_RETRY_SECONDS)

    def _install(self, table: dict[str, RouteRecord]) -> None:
        for name in list(self.breakers):
            if self.routes.get(name) != table.get(name):
                del self.breakers[name]  # a new or changed route starts with a closed circuit
        self.routes = table

    def apply_local(self, name: str, route: RouteRecord | None) -> None:
        """Apply a change this node just wrote to storage (before the control round trip)."""
        self._version += 1
        table = dict(self.routes)
        if route is None:
            table.pop(name, None)
        else:
            table[name] = route
        self._install(table)

    async def put(self, route: RouteRecord) -> None:
        await self.gw.storage.put_route(route)
        self.apply_local(route.name, route)
        await self.gw.broker.publish_control(RoutesChanged())

    async def delete(self, name: str) -> bool:
        removed = await self.gw.storage.delete_route(name)
        self.apply_local(name, None)
        if removed:
            await self.gw.broker.publish_control(RoutesChanged())
        return removed

    def breaker(self, name: str) -> CircuitBreaker:
        breaker = self.breakers.get(name)
        if breaker is None:
            breaker = self.breakers[name] = CircuitBreaker(
                self.breaker_failures, self.breaker_reset
            )
        return breaker

    # -- calling a backend ----------------------------------------------------------------------
    async def call(
        self,
        route: RouteRecord,
        method: str,
        url: str,
        headers: dict[str, str],
        content: bytes,
    ) -> tuple[httpx.Response, bytes]:
        """Send one request through the route's breaker; (response, raw body) for any answer
        of the backend, else ProxyFailure (502 unreachable, 503 open circuit, 504 timeout)."""
        client = self.client
        if client is None:
            raise ProxyFailure(503, "The proxy is not running")
        name = route.name
        counts = self.gw.metrics.proxy
        breaker = self.breaker(name)
        allowed, trial = breaker.allow()
        if not allowed:
            counts[(name, "circuit_open")] += 1
            raise ProxyFailure(
                503,
                f"Circuit open for API '{name}': its backend is failing; retry later",
                retry_after=breaker.retry_after(),
            )
        request = client.build_request(
            method,
            url,
            headers=headers,
            content=content or None,
            timeout=httpx.Timeout(route.timeout),
        )
        attempts = 2 if method in IDEMPOTENT else 1
        settled = False
        try:
            for attempt in range(attempts):
                try:
                    async with asyncio.timeout(route.timeout):
                        response = await client.send(request, stream=True)
                        try:
                            body = await self._read(response)
                        finally:
                            await response.aclose()
                except httpx.PoolTimeout:
                    counts[(name, "pool_exhausted")] += 1
                    raise ProxyFailure(
                        503, "Too many proxied requests in flight; retry later", 1.0
                    ) from None
                except (httpx.TimeoutException, TimeoutError):
                    settled = True
                    breaker.failure(trial)
                    counts[(name, "timeout")] += 1
                    raise ProxyFailure(
                        504, f"API '{name}' did not answer within {route.timeout:g} s"
                    ) from None
                except (httpx.NetworkError, httpx.RemoteProtocolError) as exc:
                    if attempt + 1 < attempts:
                        counts[(name, "retried")] += 1
                        continue
                    settled = True
                    breaker.failure(trial)
                    counts[(name, "unreachable")] += 1
                    reason = str(exc) or type(exc).__name__
                    raise ProxyFailure(502, f"API '{name}' is unreachable: {reason}") from None
                except _TooLarge:
                    settled = True
                    breaker.success(trial)
                    counts[(name, "too_large")] += 1
                    raise ProxyFailure(
                        502,
                        f"API '{name}' answered more than {self.max_response_bytes} bytes",
                    ) from None
                except httpx.HTTPError as exc:  # a request httpx cannot send (bad URL, ...)
                    counts[(name, "invalid_request")] += 1
                    raise ProxyFailure(
                        502, f"Cannot forward to API '{name}': {exc or type(exc).__name__}"
                    ) from None
                settled = True
                breaker.success(trial)
                counts[(name, _status_class(response.status_code))] += 1
                return response, body
            raise AssertionError("unreachable")  # pragma: no cover - the loop always exits
        finally:
            if not settled:
                breaker.release(trial)

    async def _read(self, response: httpx.Response) -> bytes:
        """The raw (still content-encoded) body, refused past the size limit."""
        limit = self.max_response_bytes
        declared = response.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise _TooLarge
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.aiter_raw():
            size += len(chunk)
            if size > limit:
                raise _TooLarge
            chunks.append(chunk)
        return b"".join(chunks)

    # -- HTTP -----------------------------------------------------------------------------------
    def identify(self, ctx: Context, route: RouteRecord) -> Claims | None:
        """The caller's verified claims. A route with ``require_auth`` answers 401 (with the
        usual messages) without a valid token; others just forward anonymous callers."""
        if route.require_auth:
            return self.gw.auth.bearer(ctx)
        if not ctx.request.headers.get("authorization"):
            return None
        try:
            return self.gw.auth.bearer(ctx)
        except HTTPError:
            return None

    def request_headers(
        self, request: HTTPRequest, route: RouteRecord, claims: Claims | None
    ) -> dict[str, str]:
        incoming = request.headers
        dropped = REQUEST_DROP
        listed = incoming.get("connection")
        if listed:
            dropped = dropped | {t.strip().lower() for t in listed.split(",")}
        headers = {k: v for k, v in incoming.items() if k.lower() not in dropped}
        peer = request.client_ip
        if peer:
            previous = headers.get("x-forwarded-for")
            headers["x-forwarded-for"] = f"{previous}, {peer}" if previous else peer
        for name, value in route.headers.items():
            headers[name.lower()] = value
        if claims is not None:
            headers["x-user-id"] = claims.user_id
            if claims.sid:
                headers["x-session-id"] = claims.sid
        return headers

    async def forward(self, ctx: Context) -> Response:
        # Continue in a Task: the first step of a handler runs inside a uWS callback, where
        # httpx/anyio would find no (or a foreign) current task.
        await asyncio.sleep(0)
        request = ctx.request
        name = ctx.params["name"]
        route = self.routes.get(name)
        if route is None:
            raise not_found(f"API '{name}' not found")
        claims = self.identify(ctx, route)
        url = target_url(route, ctx.params.get("rest", ""), request.query_string)
        headers = self.request_headers(request, route, claims)
        try:
            response, body = await self.call(route, request.method, url, headers, request.body)
        except ProxyFailure as exc:
            raise exc.http_error() from None
        content_type = response.headers.get("content-type")
        drop = RESPONSE_DROP
        listed = response.headers.get("connection")
        if listed:
            drop = drop | {t.strip().lower() for t in listed.split(",")}
        passed = [(k, v) for k, v in response.headers.multi_items() if k.lower() not in drop]
        if content_type is None:
            content_type = "application/octet-stream" if body else ""
        return Response(
            response.status_code,
            body,
            content_type=content_type.encode("latin-1"),
            headers=passed or None,
        )

    # -- WebSocket messages for ws_supported routes ------------------------------------------------
    def ws_fallback(self, conn: Connection, frame: ClientFrame) -> Awaitable[Any] | None:
        route = self.routes.get(frame.type)
        if route is None or not route.ws_supported:
            nxt = self._next_fallback
            return nxt(conn, frame) if nxt is not None else None
        return self.ws_call(conn, frame, route)

    async def ws_call(
        self, conn: Connection, frame: ClientFrame, route: RouteRecord
    ) -> dict[str, Any]:
        await asyncio.sleep(0)  # see forward(); the hub already applied the rate limit
        data = frame.data
        body = orjson.dumps(
            {
                "user_id": conn.user_id,
                "session_id": conn.session_id,
                "message": orjson.Fragment(data) if data is not None else None,
            }
        )
        headers = {name.lower(): value for name, value in route.headers.items()}
        headers.update(
            {
                "content-type": "application/json",
                "accept": "application/json",
                "accept-encoding": "identity",
                "x-user-id": conn.user_id,
                "x-session-id": conn.session_id,
            }
        )
        try:
            response, content = await self.call(
                route, route.method, target_url(route, "", ""), headers, body
            )
        except ProxyFailure as exc:
            raise ClientError(exc.status, exc.message) from None
        if response.status_code >= 400:
            raise ClientError(502, f"API '{route.name}' answered {response.status_code}")
        try:
            result = orjson.loads(content) if content else None
        except orjson.JSONDecodeError:
            raise ClientError(502, f"API '{route.name}' did not answer JSON") from None
        return {"type": f"{route.name}_response", "data": result}
