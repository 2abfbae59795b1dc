"""The broker interface (how nodes reach each other) and the events it hands back to the node.

Two implementations share this interface and one conformance suite (tests/broker): the
in-process :mod:`pygw.broker.memory` (one node) and :mod:`pygw.broker.redis` (any number of
nodes through Redis pub/sub).
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from pygw.core.channels import PLAIN_PUBLISH, PublishOptions
from pygw.core.control import ControlMessage


@dataclass(slots=True, frozen=True)
class Publication:
    offset: int
    """Position in the channel's stream (1, 2, ...); 0 for channels without offsets."""
    epoch: str
    """Identifies the stream's history; changes when history was lost (e.g. Redis flushed)."""
    envelope: bytes
    """The frame subscribers receive, encoded once: ``{"type":"message","channel",...}``."""


@dataclass(slots=True, frozen=True)
class Recovery:
    envelopes: list[bytes]
    """Missed publications after the client's offset, oldest first."""
    recovered: bool
    """True only if every publication after the client's offset was still in history."""
    epoch: str
    offset: int
    """The stream's top offset when the history was read."""


class BrokerHandler(Protocol):
    """Implemented by the node; called by the broker on the event loop."""

    def on_publication(
        self, channel: str, offset: int, envelope: bytes, published_us: int = 0
    ) -> None:
        """Deliver to this node's subscribers of ``channel``. ``published_us`` is the publish
        time (UNIX microseconds) when the broker knows it, for latency metrics."""

    def on_control(self, message: ControlMessage) -> None:
        """A control message (revocation, disconnect, route change) from any node, this one
        included. Queries are answered through :meth:`answer` instead."""

    def answer(self, name: str, args: dict[str, Any]) -> dict[str, Any]:
        """This node's answer to a cluster-wide query (see :meth:`Broker.gather`)."""

    def on_resync(self) -> None:
        """The link to the other nodes was re-established after a loss: control messages may
        have been missed; reload what they carry (e.g. revoked tokens)."""


class Broker(abc.ABC):
    name: str
    stats_provider: Callable[[], dict[str, Any]] | None = None
    """Set by the node: what it reports about itself to the other nodes."""

    @abc.abstractmethod
    async def start(self, handler: BrokerHandler) -> None: ...

    @abc.abstractmethod
    async def close(self) -> None: ...

    # -- control plane ---------------------------------------------------------------------------
    @abc.abstractmethod
    async def publish_control(self, message: ControlMessage) -> None:
        """Send a control message to every node, this one included."""

    # -- channels --------------------------------------------------------------------------------
    @abc.abstractmethod
    async def publish(
        self,
        channel: str,
        data_json: bytes,
        options: PublishOptions = PLAIN_PUBLISH,
    ) -> Publication:
        """Assign the next offset (if ``options.with_offset``), keep it in history as
        configured, and deliver it to every node's subscribers exactly once (this node's
        included, through :meth:`BrokerHandler.on_publication`)."""

    @abc.abstractmethod
    async def subscribe(self, channel: str) -> None:
        """This node has local subscribers of ``channel`` now; returns once publications made
        from now on are guaranteed to reach this node."""

    @abc.abstractmethod
    async def unsubscribe(self, channel: str) -> None:
        """This node's last local subscriber of ``channel`` left."""

    @abc.abstractmethod
    async def top(self, channel: str) -> tuple[str, int]:
        """(epoch, top offset) of the channel's stream."""

    @abc.abstractmethod
    async def recover(self, channel: str, epoch: str, offset: int) -> Recovery: ...

    @abc.abstractmethod
    async def history(
        self, channel: str, since: int = 0, limit: int = 100
    ) -> list[tuple[int, bytes]]:
        """(offset, data_json) of retained publications after ``since``, oldest first."""

    @abc.abstractmethod
    async def gather(
        self, name: str, args: dict[str, Any], wait: float = 1.0
    ) -> list[dict[str, Any]]:
        """Ask every live node (this one included) a query; their answers, as many as arrived
        within ``wait`` seconds."""

    @abc.abstractmethod
    async def nodes(self) -> dict[str, dict[str, Any]]:
        """Live nodes and what each reports about itself (e.g. its connection count)."""

    # -- presence --------------------------------------------------------------------------------
    @abc.abstractmethod
    async def presence_join(self, channel: str, client_id: str, info: dict[str, Any]) -> None: ...

    @abc.abstractmethod
    async def presence_leave(self, channel: str, client_id: str) -> None: ...

    @abc.abstractmethod
    async def presence(self, channel: str) -> dict[str, dict[str, Any]]:
        """client_id -> info for every live subscriber of ``channel`` on every node."""
