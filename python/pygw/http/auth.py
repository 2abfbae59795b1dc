"""Who is calling: the route's ``auth`` requirement checked against the request's credentials
(a bearer access token, or for server routes an ``X-API-Key``)."""

from __future__ import annotations

from pygw.auth.bearer import bearer_token
from pygw.auth.service import AuthService
from pygw.core.errors import Forbidden, Unauthenticated
from pygw.http.routing import Auth, Context

ADMIN_ONLY = "Access denied. Required roles: admin"


class Authenticator:
    def __init__(self, auth: AuthService) -> None:
        self.auth = auth

    def authenticate(self, ctx: Context, required: Auth) -> None:
        """Fill ``ctx.claims`` (or ``ctx.api_key``), or raise Unauthenticated / Forbidden."""
        headers = ctx.request.headers
        if required == "server":
            key = headers.get("x-api-key")
            if key is not None:
                if not self.auth.api_keys or not self.auth.api_key_valid(key):
                    raise Unauthenticated("Invalid API key")
                ctx.api_key = key
                return
        claims = self.auth.verify_access(bearer_token(headers.get("authorization")))
        ctx.claims = claims
        if required in ("admin", "server") and claims.role != "admin":
            raise Forbidden(ADMIN_ONLY)
