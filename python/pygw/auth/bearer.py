"""The ``Authorization: Bearer <token>`` header, parsed one way for every reader."""

from __future__ import annotations

from pygw.core.errors import Unauthenticated


def bearer_token(header: str | None) -> str:
    """The token of a bearer ``Authorization`` header; Unauthenticated with the contract's
    messages otherwise ("Not authenticated": no header or another scheme; "Authentication
    required": an empty token)."""
    if not header:
        raise Unauthenticated("Not authenticated")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer":
        raise Unauthenticated("Not authenticated")
    token = token.strip()
    if not token:
        raise Unauthenticated("Authentication required")
    return token
