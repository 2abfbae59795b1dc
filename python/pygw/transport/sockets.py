"""Operations on an open WebSocket, whichever transport carries it.

The hub and its connections hold the transport's handle for a socket (``Socket.ws``) and act on
it only through the functions here: ``send(ws, data, opcode=OPCODE_TEXT)``,
``end(ws, code, reason)``, ``subscribe(ws, topic)``, ``unsubscribe(ws, topic)`` and
``buffered_amount(ws)``. They are the uWS transport's (native, on an int handle) unless another
transport installed its own with :func:`install` — one transport per process, as there is one
server per process. Call them through the module (``sockets.send(...)``), never bind them at
import time, so that the installed ones are the ones called.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pygw.transport import uws

__all__ = [
    "OPCODE_BINARY",
    "OPCODE_TEXT",
    "SocketOps",
    "buffered_amount",
    "end",
    "install",
    "send",
    "subscribe",
    "unsubscribe",
]

OPCODE_TEXT = uws.OPCODE_TEXT
OPCODE_BINARY = uws.OPCODE_BINARY


@dataclass(frozen=True, slots=True)
class SocketOps:
    """One transport's operations on its socket handles."""

    send: Callable[..., Any]
    """``send(ws, data, opcode=OPCODE_TEXT)``: one frame."""
    end: Callable[[Any, int, bytes], None]
    """``end(ws, code, reason)``: close with a close frame; the close handler runs first."""
    subscribe: Callable[[Any, bytes], Any]
    unsubscribe: Callable[[Any, bytes], Any]
    buffered_amount: Callable[[Any], int]
    """Bytes queued for the socket and not yet written."""


UWS_OPS = SocketOps(
    send=uws.ws_send,
    end=uws.ws_end,
    subscribe=uws.ws_subscribe,
    unsubscribe=uws.ws_unsubscribe,
    buffered_amount=uws.ws_buffered_amount,
)

send: Callable[..., Any] = UWS_OPS.send
end: Callable[[Any, int, bytes], None] = UWS_OPS.end
subscribe: Callable[[Any, bytes], Any] = UWS_OPS.subscribe
unsubscribe: Callable[[Any, bytes], Any] = UWS_OPS.unsubscribe
buffered_amount: Callable[[Any], int] = UWS_OPS.buffered_amount
_installed = UWS_OPS


def install(ops: SocketOps) -> SocketOps:
    """Make ``ops`` the operations used from now on; returns the ones they replace."""
    global _installed, send, end, subscribe, unsubscribe, buffered_amount
    previous = _installed
    _installed = ops
    send, end, subscribe = ops.send, ops.end, ops.subscribe
    unsubscribe, buffered_amount = ops.unsubscribe, ops.buffered_amount
    return previous
