"""One WebSocket client: who it is and what it is subscribed to.

Kept small (slots, no per-connection tasks or timers): an idle connection costs the transport's
socket plus this object, a few hundred bytes. The socket is acted on through
:mod:`pygw.transport.sockets`, whichever transport carries it.
"""

from __future__ import annotations

import itertools
import time
from typing import Any

import orjson

from pygw.core.codes import CLOSE_NORMAL
from pygw.transport import sockets

_ids = itertools.count(1)


class Connection:
    __slots__ = (
        "channels",
        "closing",
        "connected_at",
        "errors",
        "errors_since",
        "exp",
        "family",
        "gen",
        "id",
        "jti",
        "last_seen",
        "refused",
        "remote",
        "role",
        "session_id",
        "subscribing",
        "user_id",
        "ws",
    )

    def __init__(
        self,
        *,
        user_id: str = "",
        role: str = "user",
        session_id: str = "",
        family: str | None = None,
        remote: str = "",
        refused: str | None = None,
        exp: int = 0,
        gen: int = 0,
        jti: str | None = None,
    ) -> None:
        self.id = next(_ids)
        self.ws: Any = None
        self.user_id = user_id
        self.role = role
        self.session_id = session_id
        self.family = family
        self.exp = exp
        """Expiry (UNIX seconds) of the access token the socket was opened or refreshed with."""
        self.gen = gen
        """That token's ``gen`` claim and ``jti``: a revocation of either closes the socket."""
        self.jti = jti
        self.remote = remote
        self.refused = refused
        """Set when the upgrade is accepted only to close with 1008 and this reason."""
        self.channels: set[str] | None = None
        self.subscribing = 0
        """Subscriptions under way (not in ``channels`` yet); they count towards the cap."""
        self.errors = 0
        self.errors_since = 0.0
        self.closing = False
        self.connected_at = time.time()
        self.last_seen = time.monotonic()

    @property
    def welcome(self) -> str:
        """The ``message`` of the ``connected`` frame."""
        return "WebSocket connection established"

    @property
    def open(self) -> bool:
        return self.ws is not None and not self.closing

    def send_bytes(self, data: bytes) -> bool:
        """Send one TEXT frame; False if the socket is gone."""
        ws = self.ws
        if ws is None:
            return False
        sockets.send(ws, data)
        return True

    def send_publication(self, channel: str, epoch: str, offset: int, envelope: bytes) -> bool:
        """Send one publication of ``channel`` (its envelope, encoded once for every subscriber),
        outside a topic publish: recovery after a subscribe. Streams also label it with
        ``epoch:offset``."""
        return self.send_bytes(envelope)

    def subscribe_topic(self, topic: bytes) -> None:
        """Receive the transport's publications to ``topic`` from now on."""
        sockets.subscribe(self.ws, topic)

    def unsubscribe_topic(self, topic: bytes) -> None:
        sockets.unsubscribe(self.ws, topic)

    def buffered_amount(self) -> int:
        """Bytes sent to this client and not yet written to its socket."""
        return int(sockets.buffered_amount(self.ws))

    def send(self, message: dict[str, Any]) -> bool:
        return self.send_bytes(orjson.dumps(message))

    def send_binary(self, message: dict[str, Any]) -> bool:
        """Send JSON as one BINARY frame (``PYGW_WS_FRAMES=original``); False if gone."""
        ws = self.ws
        if ws is None:
            return False
        sockets.send(ws, orjson.dumps(message), sockets.OPCODE_BINARY)
        return True

    def close(self, code: int = CLOSE_NORMAL, reason: str = "") -> None:
        """Close with a close frame; further sends are ignored."""
        ws = self.ws
        if ws is None or self.closing:
            return
        self.closing = True
        sockets.end(ws, code, reason.encode())

    def __repr__(self) -> str:
        return f"<Connection {self.id} user={self.user_id!r} session={self.session_id!r}>"
