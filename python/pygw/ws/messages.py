"""Client messages: decode, rate-limit, check the sender's role, run the type's handler, answer.

A handler gets the connection and the decoded frame; a dict it returns is the reply (with the
frame's ``id`` echoed), an awaitable is run (its first step inside the uWS callback, see
``transport/eager.py``) and answered when it ends. Every refusal is an error frame
``{"type":"error","code","message","id"?}``; domain errors (:mod:`pygw.core.errors`) become error
frames here and only here (:meth:`Messages.fail`). Too many error replies within ERROR_WINDOW close
the socket (1008 "Too many errors").

Who may send what (the original's permissions, :data:`SENDABLE`): a ``user`` may send
``update_api_key``, ``ping``, ``pong``, ``chat_message`` and pygw's ``subscribe``,
``unsubscribe`` and ``publish``; an ``admin`` any type. Types an app registers
(``Gateway.on``) or a ``ws_supported`` route adds are open to every role unless their roles say
otherwise; ``PYGW_MESSAGE_ROLES`` wins over all of it. A type the sender's role may not send is
refused with "Unauthorized: role '<role>' cannot send '<type>'"; a type nobody handles, from a role
that may send it, with "Unknown message type: <type>".

Frames: JSON TEXT frames. :class:`OriginalFrames` (``PYGW_WS_FRAMES=original``) sends the
``ack``, ``error`` and ``<route>_response`` frames as BINARY messages and error frames without
``code``, frame for frame as the original's code did.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from pygw._native import ClientFrame, FrameError, decode_frame
from pygw.core.codes import (
    CLOSE_POLICY,
    CLOSE_TOO_BIG,
    E_FORBIDDEN,
    E_INTERNAL,
    E_NOT_FOUND,
    E_RATE_LIMITED,
)
from pygw.core.errors import BackendUnavailable, PygwError
from pygw.core.tasks import BackgroundTasks
from pygw.metrics import Metrics
from pygw.transport import eager
from pygw.ws.connection import Connection

log = logging.getLogger("pygw.ws")

ERROR_WINDOW = 10.0
"""More than ``PYGW_WS_MAX_ERRORS`` error replies within this many seconds close the socket."""

SENDABLE: Mapping[str, frozenset[str] | None] = {
    "user": frozenset(
        {"update_api_key", "ping", "pong", "chat_message", "subscribe", "unsubscribe", "publish"}
    ),
    "admin": None,
}
"""Role -> the client message types it may send without a handler saying so (None = any): the
original gateway's ``message_permissions`` plus pygw's channel messages."""

Handler = Callable[[Connection, ClientFrame], Awaitable[Any] | Any]
"""A client message handler. If it returns a dict, that is sent as the reply (``id`` echoed)."""
Fallback = Callable[[Connection, ClientFrame], Awaitable[Any] | None]
"""Consulted for types without a handler (dynamic routes); None means "not mine either"."""
RateCheck = Callable[[int], bool]
"""``check(conn_id)``: True if the connection may send one more message now."""


@dataclass(slots=True)
class MessageType:
    handler: Handler
    roles: frozenset[str] | None
    """Roles allowed to send this type; None = any authenticated role."""
    received: int = 0
    """Messages of this type received (for metrics; an attribute is the cheapest counter)."""


def error_frame(code: int, message: str, id_raw: bytes | None) -> dict[str, Any]:
    payload: dict[str, Any] = {"type": "error", "code": code, "message": message}
    if id_raw is not None:
        payload["id"] = orjson.Fragment(id_raw)
    return payload


class Messages:
    def __init__(
        self,
        *,
        metrics: Metrics,
        tasks: BackgroundTasks,
        rate_check: RateCheck,
        max_message_bytes: int,
        max_errors: int,
        configured_roles: Mapping[str, Iterable[str]],
    ) -> None:
        self.metrics = metrics
        self.tasks = tasks
        self.rate_check = rate_check
        self.max_message_bytes = max_message_bytes
        self.max_errors = max_errors
        self.configured_roles = {t: frozenset(r) for t, r in configured_roles.items()}
        """``PYGW_MESSAGE_ROLES``: wins over the roles the code registers."""
        self.types: dict[str, MessageType] = {}
        self.fallback: Fallback | None = None

    def received_by_type(self) -> dict[str, int]:
        return {name: kind.received for name, kind in self.types.items()}

    def register(self, type_: str, handler: Handler, roles: Iterable[str] | None = None) -> None:
        """Handle client messages of ``type_``; ``roles`` limits who may send them (configured
        ``PYGW_MESSAGE_ROLES`` win over what the code says)."""
        configured = self.configured_roles.get(type_)
        allowed = configured if configured is not None else roles
        self.types[type_] = MessageType(
            handler, frozenset(allowed) if allowed is not None else None
        )

    # -- dispatch (the hot path) ------------------------------------------------------------------
    def dispatch(self, conn: Connection, data: bytes, opcode: int) -> None:
        conn.last_seen = time.monotonic()
        if conn.closing:
            return
        self.metrics.messages_in += 1
        if len(data) > self.max_message_bytes:
            conn.close(CLOSE_TOO_BIG, "Message too big")
            return
        try:
            frame = decode_frame(data)
        except FrameError as exc:
            self.error(conn, exc.code, exc.message, exc.id)
            return
        # Every decoded message counts, whatever its type (dynamic routes and unknown types too);
        # refusals are errors, so a client that keeps flooding is closed 1008 "Too many errors".
        if not self.rate_check(conn.id):
            self.error(conn, E_RATE_LIMITED, "Rate limit exceeded", frame.id)
            return
        kind = self.types.get(frame.type)
        if kind is None:
            self._unhandled(conn, frame)
            return
        kind.received += 1
        roles = kind.roles
        if roles is not None and conn.role not in roles:
            self._unauthorized(conn, frame)
            return
        try:
            result = kind.handler(conn, frame)
        except PygwError as exc:
            self.fail(conn, exc, frame.id)
            return
        if result is None:
            return
        if isinstance(result, dict):
            self.reply(conn, frame, result)
            return
        self._run(conn, frame, result)

    def _unhandled(self, conn: Connection, frame: ClientFrame) -> None:
        """A type without a handler: a ``ws_supported`` route's (the fallback), else refused."""
        configured = self.configured_roles.get(frame.type)
        if configured is not None and conn.role not in configured:
            self._unauthorized(conn, frame)
            return
        if self.fallback is not None:
            pending = self.fallback(conn, frame)
            if pending is not None:
                self._run(conn, frame, pending)
                return
        if configured is None and not may_send(conn.role, frame.type):
            self._unauthorized(conn, frame)
            return
        self.error(conn, E_NOT_FOUND, f"Unknown message type: {frame.type}", frame.id)

    def _unauthorized(self, conn: Connection, frame: ClientFrame) -> None:
        message = f"Unauthorized: role '{conn.role}' cannot send '{frame.type}'"
        self.error(conn, E_FORBIDDEN, message, frame.id)

    def _run(self, conn: Connection, frame: ClientFrame, awaitable: Awaitable[Any]) -> None:
        _result, task = eager.start(self._guard(conn, frame, awaitable))
        if task is not None:
            self.tasks.track(task)

    async def _guard(self, conn: Connection, frame: ClientFrame, awaitable: Awaitable[Any]) -> None:
        try:
            result = await awaitable
        except PygwError as exc:
            if isinstance(exc, BackendUnavailable):
                log.warning("backend unavailable handling %r: %s", frame.type, exc)
            self.fail(conn, exc, frame.id)
        except Exception:
            log.exception("handler for %r failed", frame.type)
            self.error(conn, E_INTERNAL, "Internal error", frame.id)
        else:
            if isinstance(result, dict):
                self.reply(conn, frame, result)

    # -- answers ---------------------------------------------------------------------------------
    def reply(self, conn: Connection, frame: ClientFrame, message: dict[str, Any]) -> None:
        if frame.id is not None:
            message["id"] = orjson.Fragment(frame.id)
        conn.send(message)
        self.metrics.messages_out_by_type[message["type"]] += 1

    def fail(self, conn: Connection, exc: PygwError, id_raw: bytes | None) -> None:
        """The error frame for a domain error (the one place they are mapped)."""
        if isinstance(exc, BackendUnavailable):
            message = "Backend unavailable, try again"
        else:
            message = exc.message
        self.error(conn, exc.status, message, id_raw)

    def error(self, conn: Connection, code: int, message: str, id_raw: bytes | None) -> None:
        conn.send(error_frame(code, message, id_raw))
        self._count_error(conn)

    def _count_error(self, conn: Connection) -> None:
        """Metrics, and the close (1008 "Too many errors") of a client that keeps failing."""
        metrics = self.metrics
        metrics.ws_errors += 1
        metrics.messages_out_by_type["error"] += 1
        now = time.monotonic()
        if now - conn.errors_since > ERROR_WINDOW:
            conn.errors_since = now
            conn.errors = 0
        conn.errors += 1
        if conn.errors > self.max_errors:
            conn.close(CLOSE_POLICY, "Too many errors")


def may_send(role: str, type_: str) -> bool:
    """Whether :data:`SENDABLE` lets ``role`` send ``type_`` (for types without a handler)."""
    sendable = SENDABLE.get(role, frozenset())
    return sendable is None or type_ in sendable


class OriginalFrames(Messages):
    """``PYGW_WS_FRAMES=original``: the original's code sent ``ack``, ``error`` and dynamic-route
    ``<name>_response`` frames with ``send_bytes`` (BINARY messages; ``connected``, ``pong`` and
    keep-alive pings as TEXT), and error frames as exactly ``{"type":"error","message"}``.
    Clients written against it may decode those frames as binary; this reproduces them."""

    def reply(self, conn: Connection, frame: ClientFrame, message: dict[str, Any]) -> None:
        if frame.id is not None:
            message["id"] = orjson.Fragment(frame.id)
        type_ = message["type"]
        if type_ in ("ack", f"{frame.type}_response"):
            conn.send_binary(message)
        else:
            conn.send(message)
        self.metrics.messages_out_by_type[type_] += 1

    def error(self, conn: Connection, code: int, message: str, id_raw: bytes | None) -> None:
        payload: dict[str, Any] = {"type": "error", "message": message}
        if id_raw is not None:
            payload["id"] = orjson.Fragment(id_raw)
        conn.send_binary(payload)
        self._count_error(conn)
