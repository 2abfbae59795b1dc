"""WebSocket close codes and the codes of error frames (``{"type":"error","code":...}``)."""

from __future__ import annotations

# Close codes (RFC 6455 §7.4.1) as pygw uses them.
CLOSE_NORMAL = 1000
"""Logout, account deletion, a new login, a server-side disconnect."""
CLOSE_GOING_AWAY = 1001
"""The node is shutting down or draining: reconnect (to another node)."""
CLOSE_POLICY = 1008
"""Invalid or expired token, session mismatch, pong timeout, too many errors."""
CLOSE_TOO_BIG = 1009
"""A client frame over ``PYGW_WS_MAX_MESSAGE_BYTES``."""
CLOSE_TRY_AGAIN = 1013
"""The client stopped reading and its send queue passed ``PYGW_WS_MAX_BACKPRESSURE``."""

# Error frame codes: HTTP-like and stable.
E_BAD_REQUEST = 400
E_FORBIDDEN = 403
E_NOT_FOUND = 404
E_CONFLICT = 409
E_TOO_LARGE = 413
E_RATE_LIMITED = 429
E_INTERNAL = 500
E_UNAVAILABLE = 503
