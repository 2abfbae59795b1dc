"""CORS for the HTTP API, and the Origin allow-list that protects WebSockets from cross-site
hijacking (a browser sends the page's Origin with the upgrade; cookies or not, a page from
another site must not get a socket)."""

from __future__ import annotations

from collections.abc import Iterable

from pygw.transport.types import Response

ALLOW_METHODS = "GET, POST, PUT, PATCH, DELETE, OPTIONS"
ALLOW_HEADERS = "Authorization, Content-Type, X-API-Key, X-Request-ID"
EXPOSE_HEADERS = "Retry-After, X-Request-ID"


class OriginMatcher:
    """Exact origins (``https://app.example.com``), subdomain wildcards
    (``https://*.example.com``) or ``*`` for any."""

    def __init__(self, patterns: Iterable[str]) -> None:
        cleaned = [p.strip().rstrip("/").lower() for p in patterns if p.strip()]
        self.any = "*" in cleaned
        self.exact = frozenset(p for p in cleaned if "*" not in p)
        self.suffixes = tuple(
            (p.split("*.", 1)[0], "." + p.split("*.", 1)[1]) for p in cleaned if "*." in p
        )
        self.enabled = bool(cleaned)

    def allows(self, origin: str) -> bool:
        return self.any or self.listed(origin)

    def listed(self, origin: str) -> bool:
        """Named by an exact origin or a subdomain wildcard (not merely by ``*``)."""
        origin = origin.rstrip("/").lower()
        if origin in self.exact:
            return True
        for scheme, suffix in self.suffixes:
            if origin.startswith(scheme) and origin.endswith(suffix):
                return True
        return False


class CORS:
    def __init__(self, origins: Iterable[str], allow_credentials: bool = False) -> None:
        self.matcher = OriginMatcher(origins)
        self.allow_credentials = allow_credentials

    @property
    def enabled(self) -> bool:
        return self.matcher.enabled

    def _allow_origin(self, origin: str) -> str:
        # An origin allowed only through "*" gets "*", never its own name echoed back: with
        # credentials that would hand every site the user's authority (browsers refuse "*" with
        # credentials, which is the point).
        return origin if self.matcher.listed(origin) else "*"

    def _credentials(self, origin: str) -> bool:
        """Credentials only for origins the operator named, never through "*"."""
        return self.allow_credentials and self.matcher.listed(origin)

    def preflight(self, origin: str, requested_headers: str | None) -> Response:
        if not self.matcher.allows(origin):
            return Response(403, b"", b"text/plain")
        headers = [
            ("Access-Control-Allow-Origin", self._allow_origin(origin)),
            ("Access-Control-Allow-Methods", ALLOW_METHODS),
            ("Access-Control-Allow-Headers", requested_headers or ALLOW_HEADERS),
            ("Access-Control-Max-Age", "600"),
            ("Vary", "Origin"),
        ]
        if self._credentials(origin):
            headers.append(("Access-Control-Allow-Credentials", "true"))
        return Response(204, b"", b"text/plain", headers=headers)

    def decorate(self, origin: str, response: Response) -> None:
        """Add the CORS headers to a response for an allowed origin."""
        if not self.matcher.allows(origin):
            return
        extra = [
            ("Access-Control-Allow-Origin", self._allow_origin(origin)),
            ("Access-Control-Expose-Headers", EXPOSE_HEADERS),
            ("Vary", "Origin"),
        ]
        if self._credentials(origin):
            extra.append(("Access-Control-Allow-Credentials", "true"))
        response.headers = (response.headers or []) + extra
