"""The HTTP application: match a route, run the hooks (rate limits), authenticate, validate the
body, call the endpoint with the services it was built with, and turn whatever happens into a
response (the error envelope for every failure; domain errors mapped by ``errors.from_domain``).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import orjson
from pydantic import BaseModel, ValidationError

from pygw.core.envelope import envelope
from pygw.core.errors import BackendUnavailable, PygwError
from pygw.http.bodyguard import check_body
from pygw.http.cors import CORS
from pygw.http.errors import (
    HTTPError,
    error_response,
    from_domain,
    reason,
    validation_error,
)
from pygw.http.routing import Auth, Context, Route, Router
from pygw.logs import request_id
from pygw.metrics import Metrics
from pygw.transport.types import HTTPRequest, Response

log = logging.getLogger("pygw.http")
access_log = logging.getLogger("pygw.access")
STATUS_CLASS = ("0xx", "1xx", "2xx", "3xx", "4xx", "5xx")
_ID_PREFIX = secrets.token_hex(4) + "-"
_ids = itertools.count(1)
"""Request ids: a random per-process prefix and a counter (unique, and cheaper than uuid4)."""

JSON = b"application/json"

# Headers copied out of every request (uWS request data is only valid inside its callback);
# each costs a call into uWS, so only what some feature reads is copied.
HEADER_NAMES = (
    "authorization",
    "content-type",
    "content-length",
    "transfer-encoding",
    "x-api-key",
    "x-request-id",
    "host",
)
CORS_HEADER_NAMES = ("origin", "access-control-request-method", "access-control-request-headers")
FORWARDED_HEADER_NAMES = ("x-forwarded-for", "x-real-ip")


class Authenticator(Protocol):
    def authenticate(self, ctx: Context, auth: Auth) -> None:
        """Fill ``ctx.claims``/``ctx.api_key`` or raise Unauthenticated/Forbidden."""


Hook = Callable[[Context, Route], Awaitable[None] | None]
"""Runs before authentication (in order); may raise HTTPError (rate limits, ...). A hook may be
a plain function or return an awaitable (e.g. a check that needs Redis)."""


def pydantic_errors(exc: ValidationError, prefix: str = "body") -> list[dict[str, Any]]:
    items = []
    for e in exc.errors(include_url=False, include_context=False, include_input=False):
        items.append({"loc": [prefix, *e["loc"]], "msg": e["msg"], "type": e["type"]})
    return items


def is_json_content_type(value: str | None) -> bool:
    if not value:
        return False
    mime = value.split(";", 1)[0].strip().lower()
    return mime == "application/json" or (
        mime.startswith("application/") and mime.endswith("+json")
    )


def parse_body(
    model: type[BaseModel], request: HTTPRequest, max_body_bytes: int = 1 << 20
) -> BaseModel:
    """The validated body: 422 without one or if it is not JSON; 413/422 from
    :func:`check_body` for what could not be stored or relayed (too large, nested too deep,
    numbers orjson cannot encode); then pydantic's validation."""
    if not request.body:
        raise validation_error([{"loc": ["body"], "msg": "Field required", "type": "missing"}])
    if not is_json_content_type(request.headers.get("content-type")):
        raise validation_error(
            [
                {
                    "loc": ["header", "content-type"],
                    "msg": "Content-Type must be application/json",
                    "type": "content_type",
                }
            ]
        )
    check_body(request.body, max_bytes=max_body_bytes)
    try:
        validated: BaseModel = model.__pydantic_validator__.validate_json(request.body)
        return validated
    except ValidationError as exc:
        raise validation_error(pydantic_errors(exc)) from None


def render(result: Any, status: int) -> Response:
    if isinstance(result, Response):
        return result
    if isinstance(result, BaseModel):
        return Response(status, result.__pydantic_serializer__.to_json(result))
    return Response(status, orjson.dumps(result))


class HTTPApplication:
    def __init__(
        self,
        router: Router,
        authenticator: Authenticator,
        services: Any,
        *,
        max_body_bytes: int,
        hooks: list[Hook] | None = None,
        cors: CORS | None = None,
        metrics: Metrics | None = None,
        access_log: bool = False,
        forwarded_headers: bool = False,
    ) -> None:
        self.router = router
        self.authenticator = authenticator
        self.services = services
        """Handed to every endpoint as its second argument."""
        self.max_body_bytes = max_body_bytes
        self.hooks: list[Hook] = hooks or []
        self.cors = cors if cors is not None and cors.enabled else None
        self.header_names: tuple[str, ...] = (
            HEADER_NAMES
            + (CORS_HEADER_NAMES if self.cors is not None else ())
            + (FORWARDED_HEADER_NAMES if forwarded_headers else ())
        )
        """What the transport copies out of each request."""
        self.metrics = metrics
        self.access_log = access_log
        self.closing = False
        """Set at shutdown, after the listener closed: requests still arriving on open
        connections get 503 and the connection is closed, so nothing is acknowledged after the
        final flush started."""
        self.draining = False
        """Set when the drain starts: every answer then carries ``Connection: close``, so a
        proxy's kept-alive connections to this node are closed by the node right after a
        complete answer, never under a request the proxy already sent. Without it nginx sent
        POSTs on idle connections the exiting node then dropped, and answered them 502 (it does
        not retry a non-idempotent request once sent)."""
        self.in_flight = 0
        """Requests being handled right now (shutdown waits for them before flushing)."""
        self._idle = asyncio.Event()
        self.all_header_prefixes = tuple(
            r.path.split("{", 1)[0] for r in router.routes if r.all_headers
        )

    def wants_all_headers(self, path: str) -> bool:
        return bool(self.all_header_prefixes) and path.startswith(self.all_header_prefixes)

    def error_response(self, request: HTTPRequest, status: int, message: str) -> Response:
        return Response(status, envelope(status, message, None, request.path))

    async def handle(self, request: HTTPRequest) -> Response:
        """Answer one request: the route's response, or the error envelope, plus the request id
        (echoed when the client sent one, always on 5xx) and CORS headers for allowed origins."""
        headers = request.headers
        given_id = headers.get("x-request-id")
        rid = given_id[:128] if given_id else f"{_ID_PREFIX}{next(_ids):x}"
        # set/set(None) rather than reset(): the handler's first step runs in the uWS callback's
        # context and the rest in a Task's copy of it (see transport/eager.py).
        request_id.set(rid)
        start = time.perf_counter()
        label = "-"
        """The route template (bounded), for the latency histogram."""
        self.in_flight += 1
        try:
            origin = headers.get("origin") if self.cors is not None else None
            if (
                origin
                and request.method == "OPTIONS"
                and "access-control-request-method" in headers
            ):
                assert self.cors is not None
                response = self.cors.preflight(
                    origin, headers.get("access-control-request-headers")
                )
            elif self.closing:
                response = Response(
                    503,
                    envelope(503, "Service Unavailable", "Server shutting down", request.path),
                    headers=[("Retry-After", "1")],
                    close=True,
                )
            else:
                response, label = await self._dispatch(request)
                if self.draining:
                    response.close = True
                if origin:
                    assert self.cors is not None
                    self.cors.decorate(origin, response)
            if given_id or response.status >= 500:
                response.headers = [*(response.headers or ()), ("X-Request-ID", rid)]
            if self.metrics is not None:
                self.metrics.http_requests[STATUS_CLASS[response.status // 100]] += 1
                self.metrics.observe_http(
                    request.method, label, response.status, time.perf_counter() - start
                )
            if self.access_log:
                access_log.info(
                    "%s %s %d %.2fms",
                    request.method,
                    request.path,
                    response.status,
                    (time.perf_counter() - start) * 1000,
                    extra={"client": request.client_ip},
                )
            return response
        finally:
            self.in_flight -= 1
            if not self.in_flight:
                self._idle.set()
            request_id.set(None)

    async def wait_idle(self) -> None:
        """Until no request is being handled."""
        while self.in_flight:
            self._idle.clear()
            await self._idle.wait()

    async def _dispatch(self, request: HTTPRequest) -> tuple[Response, str]:
        """The answer, and the matched route's template (``unmatched`` for 404/405)."""
        route, params, other_method = self.router.match(request.method, request.path)
        if route is None:
            if other_method:
                allowed = ", ".join(self.router.methods_for(request.path))
                exc = HTTPError(
                    405,
                    reason(405),
                    f"The method {request.method} is not allowed for the URL {request.path}.",
                    headers=[("Allow", allowed)],
                )
            else:
                exc = HTTPError(
                    404,
                    reason(404),
                    f"The requested URL {request.path} was not found on this server.",
                )
            return error_response(exc, request.path), "unmatched"
        request.params = params
        return await self._call(route, request), route.path

    async def _call(self, route: Route, request: HTTPRequest) -> Response:
        ctx = Context(request)
        try:
            for hook in self.hooks:
                pending = hook(ctx, route)
                if pending is not None:
                    await pending
            if route.auth is not None:
                self.authenticator.authenticate(ctx, route.auth)
            if route.body is not None:
                ctx.body = parse_body(route.body, request, self.max_body_bytes)
            result = await route.endpoint(ctx, self.services)
        except HTTPError as exc:
            return error_response(exc, request.path)
        except PygwError as exc:
            if isinstance(exc, BackendUnavailable):
                log.warning(
                    "backend unavailable during %s %s: %s", request.method, request.path, exc
                )
            return error_response(from_domain(exc), request.path)
        except ValidationError as exc:
            return error_response(validation_error(pydantic_errors(exc, "query")), request.path)
        response = render(result, route.status_code)
        if request.method == "HEAD":
            response.body = b""
        return response
