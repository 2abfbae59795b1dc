"""``/metrics`` in the Prometheus text format."""

from __future__ import annotations

from typing import TYPE_CHECKING

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from pygw.http.routing import Context, Router
from pygw.metrics import registry_for
from pygw.transport.types import Response

if TYPE_CHECKING:
    from pygw.gateway import Gateway


def build(gw: Gateway) -> Router:
    router = Router()

    def gauges() -> dict[str, float]:
        return {
            "ws_connections": gw.hub.connection_count,
            "ws_users": gw.hub.user_count,
            "uptime_seconds": gw.uptime,
        }

    registry = registry_for(gw.metrics, gauges)

    @router.get("/metrics", summary="Prometheus metrics", tags=("operations",))
    async def metrics(ctx: Context) -> Response:
        return Response(200, generate_latest(registry), CONTENT_TYPE_LATEST.encode())

    return router
