"""Health endpoints for load balancers and Kubernetes probes."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import orjson

from pygw.core.errors import BackendUnavailable
from pygw.http.routing import Context, Router
from pygw.models import HealthResponse, WSHealthResponse
from pygw.transport.types import Response

if TYPE_CHECKING:
    from pygw.gateway import Gateway

TAGS = ("health",)


def build(gw: Gateway) -> Router:
    router = Router()

    @router.get(
        "/health",
        response_model=HealthResponse,
        summary="Liveness and readiness: 503 when a required backend is down",
        tags=TAGS,
    )
    async def health(ctx: Context) -> Response:
        body: dict[str, Any] = {
            "status": "healthy",
            "gateway_id": gw.settings.gateway_id,
            "backend": gw.storage.name,
            "uptime_seconds": round(time.monotonic() - gw.started_monotonic, 3),
            "version": gw.version,
        }
        try:
            await gw.storage.ping()
            body["storage"] = "ok"
        except BackendUnavailable as exc:
            body["status"] = "unhealthy"
            body["storage"] = "unavailable"
            body["detail"] = str(exc)
        return Response(200 if body["status"] == "healthy" else 503, orjson.dumps(body))

    @router.get(
        "/ws/health",
        response_model=WSHealthResponse,
        summary="WebSocket layer status and this node's connection count",
        tags=TAGS,
    )
    async def ws_health(ctx: Context) -> dict[str, Any]:
        return {
            "status": "healthy",
            "active_connections": gw.hub.connection_count,
            "gateway_id": gw.settings.gateway_id,
            "ping_interval": gw.settings.ping_interval,
        }

    @router.get(
        "/health/connections",
        summary="Live connection counts: this node, and the cluster when known",
        tags=TAGS,
    )
    async def connections(ctx: Context) -> dict[str, Any]:
        cluster = await gw.cluster_connections()
        return {
            "gateway_id": gw.settings.gateway_id,
            "local_connections": gw.hub.connection_count,
            "local_users": gw.hub.user_count,
            "cluster_connections": None if cluster is None else sum(cluster.values()),
            "nodes": cluster,
        }

    return router
