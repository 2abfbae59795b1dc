"""The ``http`` rate-limit class as an HTTP hook: per verified user, else per client address;
callers with a valid API key (backends) and health/metrics routes are exempt."""

from __future__ import annotations

from typing import Any

from pygw._native import TokenError
from pygw.auth.bearer import bearer_token
from pygw.auth.service import AuthService
from pygw.core.errors import TooManyRequests, Unauthenticated
from pygw.core.netaddr import ClientAddress, ip_key
from pygw.http.app import Hook
from pygw.http.routing import Context, Route
from pygw.limits import Limits

HTTP_EXEMPT = frozenset(
    {"/health", "/health/live", "/health/ready", "/ws/health", "/health/connections", "/metrics"}
)
"""Routes never counted by the ``http`` class (load balancers and scrapers poll them)."""


def http_rate_hook(limits: Limits, auth: AuthService, address: ClientAddress) -> Hook | None:
    """The hook, or None when the ``http`` class is off."""
    bucket = limits.buckets.get("http")
    if bucket is None:
        return None
    metrics = limits.metrics

    def key_of(ctx: Context) -> str | None:
        request = ctx.request
        headers = request.headers
        api_key = headers.get("x-api-key")
        if api_key and auth.api_keys and auth.api_key_valid(api_key):
            return None
        header = headers.get("authorization")
        if header:
            try:
                return "u:" + auth.tokens.verify(bearer_token(header)).sub
            except (Unauthenticated, TokenError):
                pass  # counted per address; authentication answers 401 later
        return "ip:" + ip_key(address.resolve(headers, request.client_ip))

    def refuse(wait: float) -> None:
        metrics.rate_limited["http"] += 1
        raise TooManyRequests(wait)

    async def shared_check(key: str) -> None:
        wait = await bucket.check(key)
        if wait:
            refuse(wait)

    def hook(ctx: Context, route: Route) -> Any:
        if route.path in HTTP_EXEMPT:
            return None
        key = key_of(ctx)
        if key is None:
            return None
        if bucket.shared:
            return shared_check(key)
        wait = bucket.check_local(key)
        if wait:
            refuse(wait)
        return None

    return hook
