"""Health endpoints for load balancers and Kubernetes probes."""

from __future__ import annotations

from typing import Any

import orjson

from pygw.api.models import HealthResponse, WSHealthResponse
from pygw.api.services import Services
from pygw.core.errors import BackendUnavailable
from pygw.http.routing import Context, Router
from pygw.transport.types import Response

TAGS = ("health",)


router = Router()


@router.get(
    "/health",
    response_model=HealthResponse,
    summary="Health (the original's probe): 503 when a required backend is down",
    tags=TAGS,
)
async def health(ctx: Context, svc: Services) -> Response:
    body: dict[str, Any] = {
        "status": "healthy",
        "gateway_id": svc.settings.gateway_id,
        "backend": svc.storage.name,
        "uptime_seconds": round(svc.node.uptime, 3),
        "version": svc.node.version,
    }
    try:
        await svc.storage.ping()
        body["storage"] = "ok"
    except BackendUnavailable as exc:
        body["status"] = "unhealthy"
        body["storage"] = "unavailable"
        body["detail"] = str(exc)
    return Response(200 if body["status"] == "healthy" else 503, orjson.dumps(body))


@router.get(
    "/health/live",
    summary="Liveness: 200 while the process serves (also while draining or Redis is down)",
    tags=TAGS,
)
async def live(ctx: Context, svc: Services) -> dict[str, Any]:
    return {"status": "alive", "gateway_id": svc.settings.gateway_id}


@router.get(
    "/health/ready",
    summary="Readiness: 503 while draining after SIGTERM or while the backend is down",
    tags=TAGS,
)
async def ready(ctx: Context, svc: Services) -> Response:
    if svc.node.draining:
        body = {"status": "draining", "gateway_id": svc.settings.gateway_id}
        return Response(503, orjson.dumps(body))
    try:
        await svc.storage.ping()
    except BackendUnavailable as exc:
        body = {"status": "unavailable", "gateway_id": svc.settings.gateway_id, "detail": str(exc)}
        return Response(503, orjson.dumps(body))
    return Response(200, orjson.dumps({"status": "ready", "gateway_id": svc.settings.gateway_id}))


@router.get(
    "/ws/health",
    response_model=WSHealthResponse,
    summary="WebSocket layer status and this node's connection count",
    tags=TAGS,
)
async def ws_health(ctx: Context, svc: Services) -> dict[str, Any]:
    return {
        "status": "healthy",
        "active_connections": svc.connections.connection_count,
        "gateway_id": svc.settings.gateway_id,
        "ping_interval": svc.settings.ping_interval,
    }


@router.get(
    "/health/connections",
    summary="Live connection counts: this node, and the cluster when known",
    tags=TAGS,
)
async def connections(ctx: Context, svc: Services) -> dict[str, Any]:
    cluster = await svc.cluster_connections()
    return {
        "gateway_id": svc.settings.gateway_id,
        "local_connections": svc.connections.connection_count,
        "local_users": svc.connections.user_count,
        "cluster_connections": None if cluster is None else sum(cluster.values()),
        "nodes": cluster,
    }
