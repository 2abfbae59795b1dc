"""Dynamic routes (SPEC §2, §3): the route table kept in sync across nodes
(:mod:`pygw.proxy.table`), per-route circuit breakers (:mod:`pygw.proxy.breaker`), and the
forwarding of HTTP requests and ``ws_supported`` WebSocket messages to the routes' backends
(:mod:`pygw.proxy.forward`). The HTTP endpoints are in :mod:`pygw.api.proxy`.
"""

from pygw.proxy.breaker import CircuitBreaker
from pygw.proxy.forward import ProxyClient, target_url
from pygw.proxy.table import RouteTable

__all__ = ["CircuitBreaker", "ProxyClient", "RouteTable", "target_url"]
