"""The proxy's HTTP transport when private backends are not allowed: an httpcore connection pool
whose network backend resolves each backend host itself, refuses non-public addresses
(:func:`pygw.proxy.egress.refuse_private`) and connects to the addresses it checked (TLS still
verifies and sends the host name). Imported with httpx, on the first proxied request."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import httpcore
import httpx

from pygw.proxy.egress import refuse_private, resolve


class GuardedBackend(httpcore.AsyncNetworkBackend):
    def __init__(self) -> None:
        self.inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            addresses = await resolve(host, port)
        except (OSError, UnicodeError) as exc:
            raise httpcore.ConnectError(f"cannot resolve {host}: {exc}") from None
        refuse_private(host, addresses)
        error: Exception | None = None
        for address in addresses:
            try:
                return await self.inner.connect_tcp(
                    address,
                    port,
                    timeout=timeout,
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                error = exc
        assert error is not None
        raise error

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("the proxy does not connect to Unix sockets")

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)


def guarded_transport(limits: httpx.Limits) -> httpx.AsyncHTTPTransport:
    """httpx's transport with :class:`GuardedBackend` under its pool (same limits, TLS context
    and HTTP/1.1 as the default one)."""
    transport = httpx.AsyncHTTPTransport(limits=limits, trust_env=False)
    # httpx does not take a network backend; the pool it made is replaced by an equal one that
    # uses ours (covered by tests/e2e/test_proxy.py's private-address tests).
    transport._pool = httpcore.AsyncConnectionPool(
        ssl_context=httpx.create_ssl_context(trust_env=False),
        max_connections=limits.max_connections,
        max_keepalive_connections=limits.max_keepalive_connections,
        keepalive_expiry=limits.keepalive_expiry,
        network_backend=GuardedBackend(),
    )
    return transport
