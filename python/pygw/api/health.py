"""Health endpoints for load balancers and Kubernetes probes."""

from __future__ import annotations

from typing import Any

import orjson

from pygw.api.models import HealthResponse, WSHealthResponse
from pygw.api.services import Services
from pygw.core.errors import BackendUnavailable
from pygw.core.timeutil import json_seconds
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
    """The original's fields. Its ``cache_*`` counted a per-connection deduplication cache of
    client updates; pygw keeps none (every update is written, coalesced by the write-behind), so
    they report what stands in for it on this node: connected users and sessions, and the
    writes waiting for the next flush, whose interval is ``cache_ttl``."""
    s = svc.settings
    conns = svc.connections
    return {
        "status": "healthy",
        "active_connections": conns.connection_count,
        "connection_states": conns.user_count,
        "cache_users": conns.user_count,
        "cache_sessions": conns.session_count,
        "cache_messages": svc.storage.pending_writes,
        "config": {
            "ping_interval": json_seconds(s.ping_interval),
            # One deadline in pygw: no pong and no other frame within it closes (1008).
            "pong_timeout": json_seconds(s.inactivity_timeout),
            "inactivity_timeout": json_seconds(s.inactivity_timeout),
            "cache_ttl": json_seconds(s.batch_write_interval_ms / 1000),
        },
        "gateway_id": s.gateway_id,
        "ping_interval": s.ping_interval,
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
