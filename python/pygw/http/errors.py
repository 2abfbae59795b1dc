"""The one error envelope every HTTP error uses (SPEC §1).

``{"error": str, "detail": str|null, "status_code": int, "timestamp": iso, "path": str}``;
422 adds ``errors``; 429 adds ``retry_after`` (and a ``Retry-After`` header).
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

import orjson

from pygw.core.timeutil import now_iso
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


def bad_request(message: str) -> HTTPError:
    return HTTPError(400, message)


def unauthorized(message: str) -> HTTPError:
    return HTTPError(401, message, headers=[("WWW-Authenticate", "Bearer")])


def forbidden(message: str) -> HTTPError:
    return HTTPError(403, message)


def too_many_requests(retry_after: float, message: str = "Too Many Requests") -> HTTPError:
    seconds = max(1, int(retry_after + 0.999))
    return HTTPError(
        429,
        message,
        f"Rate limit exceeded; retry after {seconds} s",
        headers=[("Retry-After", str(seconds))],
        extra={"retry_after": seconds},
    )


def service_unavailable(detail: str) -> HTTPError:
    return HTTPError(503, "Service Unavailable", detail)


def envelope(
    status: int,
    error: str,
    detail: str | None,
    path: str,
    extra: dict[str, Any] | None = None,
) -> bytes:
    body: dict[str, Any] = {
        "error": error,
        "detail": detail,
        "status_code": status,
        "timestamp": now_iso(),
        "path": path,
    }
    if extra:
        body.update(extra)
    return orjson.dumps(body)


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


def validation_error(errors: list[dict[str, Any]], detail: str | None = None) -> HTTPError:
    """422 in FastAPI's item shape (``loc``/``msg``/``type``) inside pygw's envelope."""
    if detail is None and errors:
        first = errors[0]
        where = ".".join(str(p) for p in first["loc"])
        detail = f"{where}: {first['msg']}" if where else first["msg"]
    return HTTPError(422, "Validation Error", detail, extra={"errors": errors})
