"""What the HTTP endpoints may use: one typed object of narrow services, built by the gateway
(the composition root) and handed to every endpoint as its second argument.

Endpoints never see the gateway; they see these services, and the node's WebSocket side only
through :class:`LocalConnections`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Protocol

from prometheus_client.registry import CollectorRegistry

from pygw.auth.service import AuthService
from pygw.broker.base import Broker
from pygw.broker.publish import ChannelPublisher
from pygw.config import Settings
from pygw.core.errors import BackendUnavailable
from pygw.core.netaddr import ClientAddress
from pygw.http.routing import Route
from pygw.limits import Limits
from pygw.metrics import Metrics
from pygw.proxy import ProxyClient, RouteTable
from pygw.store.base import Storage


class LocalConnections(Protocol):
    """This node's WebSockets as the HTTP side sees them (the hub implements it)."""

    @property
    def connection_count(self) -> int: ...

    @property
    def user_count(self) -> int: ...

    @property
    def session_count(self) -> int:
        """Distinct sessions with a connection here."""
        ...

    def subscribers(self, channel: str) -> int:
        """Local subscribers of ``channel`` right now."""
        ...

    def local_connections(self, user_id: str) -> int: ...

    def is_online(self, user_id: str) -> bool: ...

    def describe(self, limit: int = 1000, user: str | None = None) -> dict[str, Any]: ...

    async def open_stream(self, kind: str, **request: Any) -> Any:
        """An SSE or NDJSON stream's answer (see :mod:`pygw.ws.streamopen`)."""
        ...


@dataclass(slots=True)
class NodeInfo:
    node_id: str
    version: str
    workers: int = 1
    port: int = 0
    """The port actually listened on (set at start)."""
    host: str = ""
    """The address listened on (set at start)."""
    started: float = field(default_factory=time.monotonic)
    draining: bool = False
    """SIGTERM arrived: the node is not ready and is closing its connections."""

    @property
    def uptime(self) -> float:
        return time.monotonic() - self.started


@dataclass(slots=True)
class Services:
    settings: Settings
    node: NodeInfo
    storage: Storage
    broker: Broker
    publisher: ChannelPublisher
    auth: AuthService
    limits: Limits
    client_address: ClientAddress
    connections: LocalConnections
    routes: RouteTable
    proxy: ProxyClient
    metrics: Metrics
    metrics_registry: CollectorRegistry
    api_routes: list[Route] = field(default_factory=list)
    """Every route of the HTTP API (for the OpenAPI document)."""
    cache: dict[str, bytes] = field(default_factory=dict)
    """Responses computed once per node (the OpenAPI document)."""

    async def cluster_connections(self) -> dict[str, int] | None:
        """Connections per live node (None if the backend cannot tell right now)."""
        try:
            nodes = await self.broker.nodes()
        except BackendUnavailable:
            return None
        counts = {node: int(info.get("connections", 0)) for node, info in nodes.items()}
        counts[self.node.node_id] = self.connections.connection_count
        return counts
