"""Domain errors: what went wrong, in terms every layer understands.

Services raise these; the HTTP layer turns them into the error envelope in one place
(:func:`pygw.http.errors.from_domain`) and the WebSocket layer into error frames in one place
(:meth:`pygw.ws.messages.Messages.fail`). ``status`` is the HTTP status and the error frame's
``code``; ``message`` is what the client reads (the envelope's ``error``, or its ``detail`` for
404s, whose ``error`` is always "Not Found"); ``detail`` is optional extra text for HTTP.
"""

from __future__ import annotations


class PygwError(Exception):
    """Base class of pygw's own exceptions."""

    status = 500

    def __init__(self, message: str = "", detail: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail


class BadRequest(PygwError):
    status = 400


class Unauthenticated(PygwError):
    """No usable credentials: missing, invalid, expired or revoked token (HTTP 401)."""

    status = 401


class Forbidden(PygwError):
    """Authenticated, but not allowed (HTTP 403)."""

    status = 403


class NotFound(PygwError):
    """The resource does not exist; ``message`` names it ("Session not found")."""

    status = 404


class Conflict(PygwError):
    """The resource already exists. The original gateway answers these with 400 ("Username
    already exists"), so that is the status clients expect."""

    status = 400


class TooLarge(PygwError):
    """A body, frame or stored value over its documented limit (HTTP 413)."""

    status = 413


class SessionTooLarge(TooLarge):
    """A session update larger than ``PYGW_SESSION_UPDATE_MAX_BYTES``, or one that would make
    the stored session larger than ``PYGW_SESSION_MAX_BYTES``; nothing was written (413)."""


class LimitReached(PygwError):
    """A per-connection quota is used up (e.g. ``PYGW_WS_MAX_SUBSCRIPTIONS``); the connection
    stays usable (error frame code 429)."""

    status = 429


class Invalid(PygwError):
    """Input that parses but cannot be accepted (HTTP 422); ``loc`` names the field."""

    status = 422

    def __init__(self, message: str, loc: tuple[str | int, ...] = ()) -> None:
        super().__init__(message)
        self.loc = loc


class TooManyRequests(PygwError):
    """A rate limit refused the call; retry after ``retry_after`` seconds."""

    status = 429

    def __init__(self, retry_after: float, message: str = "Too Many Requests") -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Upstream(PygwError):
    """A backend behind a dynamic route could not be used: ``status`` 502 (unreachable or a bad
    answer), 503 (its circuit is open, or the proxy is saturated) or 504 (timeout)."""

    def __init__(self, status: int, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


class BackendUnavailable(PygwError):
    """The storage or broker backend (Redis) cannot be reached right now (HTTP 503).

    The gateway keeps running and recovers by itself when the backend returns.
    """

    status = 503


class NotOwner(PygwError):
    """A session operation was asked on behalf of a user who does not own the session."""

    status = 403
