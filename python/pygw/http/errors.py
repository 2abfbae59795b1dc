"""HTTP errors: :class:`HTTPError` (what routes raise for HTTP-only failures), the mapping of
domain errors (:mod:`pygw.core.errors`) to HTTP in exactly one place (:func:`from_domain`), and
the error envelope response (SPEC §1, :mod:`pygw.core.envelope`).
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from pygw.core import errors as domain
from pygw.core.envelope import envelope, retry_seconds
from pygw.transport.types import Response


class HTTPError(Exception):
    """Raise from a route to answer with the error envelope."""

    def __init__(
        self,
        status: int,
        error: str | None = None,
        detail: str | None = None,
        *,
        headers: list[tuple[str, str]] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        self.status = status
        self.error = error or reason(status)
        self.detail = detail
        self.headers = headers
        self.extra = extra
        super().__init__(f"{status} {self.error}")


def reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def not_found(message: str) -> HTTPError:
    """404 keeps the route's own message in ``detail`` ("Session not found", ...)."""
    return HTTPError(404, "Not Found", message)


def too_many_requests(retry_after: float, message: str = "Too Many Requests") -> HTTPError:
    seconds = retry_seconds(retry_after)
    return HTTPError(
        429,
        message,
        f"Rate limit exceeded; retry after {seconds} s",
        headers=[("Retry-After", str(seconds))],
        extra={"retry_after": seconds},
    )


def service_unavailable(detail: str) -> HTTPError:
    return HTTPError(503, "Service Unavailable", detail)


def error_response(exc: HTTPError, path: str) -> Response:
    return Response(
        exc.status,
        envelope(exc.status, exc.error, exc.detail, path, exc.extra),
        headers=exc.headers,
    )


def closing_error_response(exc: HTTPError, path: str) -> Response:
    """The envelope for a refused WebSocket upgrade; the connection is closed after it."""
    response = error_response(exc, path)
    response.close = True
    return response


VALIDATION_DETAIL = "One or more fields failed validation"


def validation_error(errors: list[dict[str, Any]]) -> HTTPError:
    """422 as the original answers it: its ``detail`` text, and the failures in FastAPI's item
    shape (``loc``/``msg``/``type``) in ``errors``."""
    return HTTPError(422, "Validation Error", VALIDATION_DETAIL, extra={"errors": errors})


def from_domain(exc: domain.PygwError) -> HTTPError:
    """The HTTP answer to a domain error (the one place they are mapped)."""
    if isinstance(exc, domain.Unauthenticated):
        return HTTPError(401, exc.message, exc.detail, headers=[("WWW-Authenticate", "Bearer")])
    if isinstance(exc, domain.NotFound):
        return not_found(exc.message)
    if isinstance(exc, domain.TooManyRequests):
        return too_many_requests(exc.retry_after, exc.message)
    if isinstance(exc, domain.BackendUnavailable):
        return service_unavailable(exc.message)
    if isinstance(exc, domain.Invalid):
        return validation_error([{"loc": list(exc.loc), "msg": exc.message, "type": "value_error"}])
    if isinstance(exc, domain.Upstream):
        headers = None
        if exc.retry_after is not None:
            headers = [("Retry-After", str(retry_seconds(exc.retry_after)))]
        return HTTPError(exc.status, None, exc.message, headers=headers)
    if isinstance(exc, domain.TooLarge):
        return HTTPError(413, None, exc.message)
    return HTTPError(exc.status, exc.message, exc.detail)
