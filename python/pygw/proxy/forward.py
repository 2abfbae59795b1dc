"""Calling the backends of dynamic routes: one pooled ``httpx.AsyncClient`` per node carries every
proxied request, through the route's circuit breaker (:mod:`pygw.proxy.breaker`).

Idempotent methods are retried once on a connection error (never POST/PATCH). Answers from the
backend, 5xx included, count as successes for the breaker: the backend is reachable. Failures
are :class:`pygw.core.errors.Upstream` (502 unreachable or a bad answer, 503 open circuit or
saturated pool, 504 timeout).
"""

from __future__ import annotations

import asyncio
import logging
import unicodedata
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

import orjson

from pygw.core.errors import BadRequest, Upstream
from pygw.metrics import Metrics
from pygw.proxy.egress import PrivateAddress
from pygw.proxy.table import RouteTable
from pygw.store.base import RouteRecord

if TYPE_CHECKING:
    import httpx

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
CREDENTIALS = frozenset({"authorization", "cookie", "x-api-key"})
"""The caller's credentials for the gateway: not forwarded unless
``PYGW_PROXY_FORWARD_CREDENTIALS=true`` (a backend that needs its own sets them in the route's
``headers``; the caller's identity goes as ``X-User-ID``/``X-Session-ID``)."""
IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
DECODE_ROUNDS = 4
"""Percent-decoding passes a proxy path is checked through (``%25252e`` is three)."""


class _TooLarge(Exception):
    pass


def path_is_safe(path: str) -> bool:
    """No way for ``path`` to climb out of a route on any backend: after up to
    :data:`DECODE_ROUNDS` percent-decodings (a backend or a framework may decode again) and
    NFKC (fullwidth dots), no ``.``/``..`` segment, also with ``;params`` (``..;/``, Tomcat), no
    backslash (a separator on Windows and IIS), no control character, valid UTF-8."""
    text = path
    for _ in range(DECODE_ROUNDS + 1):
        normal = unicodedata.normalize("NFKC", text)  # fullwidth dots and backslashes
        if "\\" in normal or any(ord(c) < 0x20 or ord(c) == 0x7F for c in normal):
            return False
        if any(seg.split(";", 1)[0] in (".", "..") for seg in normal.split("/")):
            return False
        try:
            decoded = unquote(text, errors="strict")
        except UnicodeDecodeError:
            return False
        if decoded == text:
            return True
        text = decoded
    return False  # still encoded after that many rounds: nothing legitimate is


def target_url(route: RouteRecord, rest: str, query: str) -> str:
    """``base_url`` + ``path`` [+ ``/rest``] [+ ``?query``]; ``rest`` and ``query`` stay as
    the client encoded them. Paths that could climb out of the route (dot segments in any
    encoding, backslashes: :func:`path_is_safe`) are refused with 400."""
    path = route.path
    if rest:
        if not path_is_safe(rest):
            raise BadRequest("Invalid proxy path")
        path = path.rstrip("/") + "/" + rest
    url = route.base_url.rstrip("/") + path
    return f"{url}?{query}" if query else url


def _status_class(status: int) -> str:
    return f"{status // 100}xx"


def forwarded_headers(
    incoming: Mapping[str, str],
    peer: str,
    route: RouteRecord,
    user_id: str | None,
    session_id: str | None,
    forward_credentials: bool = False,
) -> dict[str, str]:
    """What goes upstream: the client's headers minus hop-by-hop and identity ones (and its
    credentials unless ``forward_credentials``), the peer appended to ``X-Forwarded-For``, the
    route's own headers, and the caller's identity."""
    dropped = REQUEST_DROP if forward_credentials else REQUEST_DROP | CREDENTIALS
    listed = incoming.get("connection")
    if listed:
        dropped = dropped | {t.strip().lower() for t in listed.split(",")}
    headers = {k: v for k, v in incoming.items() if k.lower() not in dropped}
    if peer:
        previous = headers.get("x-forwarded-for")
        headers["x-forwarded-for"] = f"{previous}, {peer}" if previous else peer
    for name, value in route.headers.items():
        headers[name.lower()] = value
    if user_id is not None:
        headers["x-user-id"] = user_id
        if session_id:
            headers["x-session-id"] = session_id
    return headers


def response_headers(response: httpx.Response) -> list[tuple[str, str]]:
    """The backend's headers that go back to the client."""
    drop = RESPONSE_DROP
    listed = response.headers.get("connection")
    if listed:
        drop = drop | {t.strip().lower() for t in listed.split(",")}
    return [(k, v) for k, v in response.headers.multi_items() if k.lower() not in drop]


class ProxyClient:
    """This node's HTTP client for dynamic routes."""

    def __init__(
        self,
        table: RouteTable,
        metrics: Metrics,
        *,
        max_connections: int,
        max_response_bytes: int,
        allow_private: bool = False,
    ) -> None:
        self.table = table
        self.metrics = metrics
        self.max_connections = max_connections
        self.max_response_bytes = max_response_bytes
        self.allow_private = allow_private
        """Connect to non-public addresses too (else :mod:`pygw.proxy.guarded` refuses them)."""
        self.client: httpx.AsyncClient | None = None
        self.running = False

    def start(self) -> None:
        """Accept calls from now on. httpx (and the client's pool) is loaded by the first call:
        a node with no dynamic route does not carry it (~8 MiB of RSS with its CLI's imports)."""
        self.running = True

    def _open_client(self) -> httpx.AsyncClient:
        import httpx

        limits = httpx.Limits(
            max_connections=self.max_connections,
            max_keepalive_connections=self.max_connections,
            keepalive_expiry=30.0,
        )
        transport = None
        if not self.allow_private:
            from pygw.proxy.guarded import guarded_transport

            transport = guarded_transport(limits)
        client = httpx.AsyncClient(
            limits=limits, transport=transport, follow_redirects=False, trust_env=False
        )
        # Forward what the client sent, not httpx's defaults (User-Agent, Accept, ...).
        client.headers.clear()
        httpx_log = logging.getLogger("httpx")
        if httpx_log.level == logging.NOTSET:
            httpx_log.setLevel(logging.WARNING)  # not one INFO line per proxied request
        self.client = client
        return client

    async def close(self) -> None:
        self.running = False
        if self.client is not None:
            await self.client.aclose()
            self.client = None

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
        of the backend, else Upstream (502 unreachable, 503 open circuit, 504 timeout)."""
        # Continue in a Task: a handler's first step runs inside a uWS callback, where
        # httpx/anyio would find no (or a foreign) current task.
        await asyncio.sleep(0)
        if not self.running:
            raise Upstream(503, "The proxy is not running")
        import httpx

        client = self.client or self._open_client()
        name = route.name
        counts = self.metrics.proxy
        breaker = self.table.breaker(name)
        allowed, trial = breaker.allow()
        if not allowed:
            counts[(name, "circuit_open")] += 1
            raise Upstream(
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
                except PrivateAddress as exc:
                    counts[(name, "private_address")] += 1
                    raise Upstream(502, f"API '{name}' refused: {exc}") from None
                except httpx.PoolTimeout:
                    counts[(name, "pool_exhausted")] += 1
                    raise Upstream(
                        503, "Too many proxied requests in flight; retry later", 1.0
                    ) from None
                except (httpx.TimeoutException, TimeoutError):
                    settled = True
                    breaker.failure(trial)
                    counts[(name, "timeout")] += 1
                    raise Upstream(
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
                    raise Upstream(502, f"API '{name}' is unreachable: {reason}") from None
                except _TooLarge:
                    settled = True
                    breaker.success(trial)
                    counts[(name, "too_large")] += 1
                    raise Upstream(
                        502,
                        f"API '{name}' answered more than {self.max_response_bytes} bytes",
                    ) from None
                except httpx.HTTPError as exc:  # a request httpx cannot send (bad URL, ...)
                    counts[(name, "invalid_request")] += 1
                    raise Upstream(
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

    async def ws_call(
        self, route: RouteRecord, user_id: str, session_id: str, data: bytes | None
    ) -> dict[str, Any]:
        """A client WebSocket message of a ``ws_supported`` route's type: the backend gets
        ``{user_id, session_id, message}``; its JSON answer comes back as
        ``{"type": "<name>_response", "data": ...}``."""
        body = orjson.dumps(
            {
                "user_id": user_id,
                "session_id": session_id,
                "message": orjson.Fragment(data) if data is not None else None,
            }
        )
        headers = {name.lower(): value for name, value in route.headers.items()}
        headers.update(
            {
                "content-type": "application/json",
                "accept": "application/json",
                "accept-encoding": "identity",
                "x-user-id": user_id,
                "x-session-id": session_id,
            }
        )
        response, content = await self.call(
            route, route.method, target_url(route, "", ""), headers, body
        )
        if response.status_code >= 400:
            raise Upstream(502, f"API '{route.name}' answered {response.status_code}")
        try:
            result = orjson.loads(content) if content else None
        except orjson.JSONDecodeError:
            raise Upstream(502, f"API '{route.name}' did not answer JSON") from None
        return {"type": f"{route.name}_response", "data": result}
