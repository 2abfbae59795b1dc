"""``/admin/*``: user roles, user and system statistics (admin tokens only)."""

from __future__ import annotations

import asyncio
import resource
from typing import Any
from urllib.parse import parse_qs

from pygw.api.models import (
    AdminUser,
    MessageResponse,
    RedisInfo,
    SystemStats,
    UsernameRequest,
    UserStats,
)
from pygw.api.server import int_query
from pygw.api.services import Services
from pygw.core.channels import is_user_channel
from pygw.core.errors import BadRequest, NotFound
from pygw.http.errors import validation_error
from pygw.http.routing import Context, Router
from pygw.metrics import rss_bytes

TAGS = ("admin",)


def memory_usage() -> dict[str, Any]:
    rss = rss_bytes()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {"rss_mb": round(rss / 2**20, 2), "peak_rss_mb": round(peak / 2**20, 2)}


router = Router()


async def set_role(svc: Services, username: str, role: str) -> None:
    """Effective at once: the user's tokens are revoked and their sockets closed (1008 "Role
    changed") on every node; a refresh gives them a token with the new role."""
    if not await svc.auth.set_role(username, role):
        raise NotFound("User not found")


@router.post(
    "/admin/users/promote",
    auth="admin",
    body=UsernameRequest,
    response_model=MessageResponse,
    summary="Give a user the admin role (at once: their tokens are revoked, they refresh)",
    tags=TAGS,
    errors=(401, 403, 404, 422),
)
async def promote(ctx: Context, svc: Services) -> dict[str, str]:
    username = ctx.body.username
    await set_role(svc, username, "admin")
    return {"message": f"User {username} promoted to admin"}


@router.post(
    "/admin/users/demote",
    auth="admin",
    body=UsernameRequest,
    response_model=MessageResponse,
    summary="Give an admin the user role (at once: their tokens are revoked, they refresh)",
    tags=TAGS,
    errors=(400, 401, 403, 404, 422),
)
async def demote(ctx: Context, svc: Services) -> dict[str, str]:
    username = ctx.body.username
    if username == ctx.claims.sub:
        raise BadRequest("Cannot demote yourself")
    await set_role(svc, username, "user")
    return {"message": f"User {username} demoted to user"}


@router.get(
    "/admin/users",
    auth="admin",
    response_model=list[AdminUser],
    summary="Every user with session count and online state",
    tags=TAGS,
    errors=(401, 403),
)
async def users(ctx: Context, svc: Services) -> list[dict[str, Any]]:
    records = await svc.storage.list_users()

    async def describe(username: str) -> tuple[int, bool]:
        sessions, conn = await asyncio.gather(
            svc.storage.list_user_sessions(username), svc.storage.get_connection(username)
        )
        online = svc.connections.is_online(username) or (conn is not None and conn.ws_connected)
        return len(sessions), online

    details = await asyncio.gather(*(describe(u.username) for u in records))
    return [
        {
            "username": u.username,
            "email": u.email,
            "role": u.role,
            "last_login": u.last_login,
            "session_count": count,
            "is_online": online,
        }
        for u, (count, online) in zip(records, details, strict=True)
    ]


@router.get(
    "/admin/users/stats",
    auth="admin",
    response_model=UserStats,
    summary="User, session and connection counts",
    tags=TAGS,
    errors=(401, 403),
)
async def user_stats(ctx: Context, svc: Services) -> dict[str, Any]:
    stats = await svc.storage.stats()
    cluster = await svc.cluster_connections()
    ws = sum(cluster.values()) if cluster else svc.connections.connection_count
    return {
        "total_users": stats.total_users,
        "active_sessions": stats.active_sessions,
        "ws_connections": ws,
        "memory_usage": memory_usage(),
    }


@router.get(
    "/admin/system/stats",
    auth="admin",
    response_model=SystemStats,
    summary="Process and backend figures",
    tags=TAGS,
    errors=(401, 403),
)
async def system_stats(ctx: Context, svc: Services) -> dict[str, Any]:
    info = await svc.storage.backend_info()
    return {
        "redis_connections": int(info.get("connected_clients", 0)) if info else 0,
        "memory_usage_mb": round(rss_bytes() / 2**20, 2),
        "uptime_seconds": round(svc.node.uptime, 3),
        "active_workers": svc.settings.workers,
    }


@router.get(
    "/admin/system/redis-info",
    auth="admin",
    response_model=RedisInfo,
    summary="Selected Redis INFO fields",
    tags=TAGS,
    errors=(401, 403, 404, 503),
)
async def redis_info(ctx: Context, svc: Services) -> dict[str, Any]:
    info = await svc.storage.backend_info()
    if info is None:
        raise NotFound("Redis is not configured (memory backend)")
    return {
        "connected_clients": int(info.get("connected_clients", 0)),
        "used_memory_human": str(info.get("used_memory_human", "")),
        "used_memory_peak_human": str(info.get("used_memory_peak_human", "")),
        "keyspace_hits": int(info.get("keyspace_hits", 0)),
        "keyspace_misses": int(info.get("keyspace_misses", 0)),
        "total_commands_processed": int(info.get("total_commands_processed", 0)),
    }


@router.get(
    "/admin/connections",
    auth="admin",
    summary="Live WebSocket connections: this node, or every node (scope=cluster)",
    tags=TAGS,
    errors=(401, 403, 422, 503),
    query=(
        ("scope", "`node` (default) or `cluster`", False),
        ("limit", "At most this many connections listed per node (default 1000)", False),
        ("user", "Only this user's connections", False),
    ),
)
async def list_connections(ctx: Context, svc: Services) -> dict[str, Any]:
    query = parse_qs(ctx.request.query_string)
    scope = query.get("scope", ["node"])[0]
    if scope not in ("node", "cluster"):
        raise validation_error(
            [{"loc": ["query", "scope"], "msg": "Must be node or cluster", "type": "enum"}]
        )
    limit = int_query(ctx, "limit", 1000, 0, 100_000)
    user = query.get("user", [None])[0]
    if scope == "node":
        nodes = [svc.connections.describe(limit=limit, user=user)]
    else:
        nodes = await svc.broker.gather("connections", {"limit": limit, "user": user})
    return {
        "scope": scope,
        "total": sum(n.get("count", 0) for n in nodes),
        "nodes": sorted(nodes, key=lambda n: str(n.get("gateway_id"))),
    }


@router.get(
    "/admin/channels",
    auth="admin",
    summary="Channels with local subscribers on every node (user channels excluded)",
    tags=TAGS,
    errors=(401, 403, 503),
)
async def list_channels(ctx: Context, svc: Services) -> dict[str, Any]:
    nodes = await svc.broker.gather("channels", {})
    totals: dict[str, dict[str, int]] = {}
    for node in nodes:
        for channel, count in (node.get("channels") or {}).items():
            if is_user_channel(channel):
                continue
            entry = totals.setdefault(channel, {"subscribers": 0, "nodes": 0})
            entry["subscribers"] += int(count)
            entry["nodes"] += 1
    channels = [{"channel": c, **v} for c, v in sorted(totals.items())]
    return {"channels": channels, "count": len(channels), "nodes": len(nodes)}


@router.post(
    "/admin/system/cleanup-sessions",
    auth="admin",
    response_model=MessageResponse,
    summary="Drop index entries of expired sessions",
    tags=TAGS,
    errors=(401, 403),
)
async def cleanup(ctx: Context, svc: Services) -> dict[str, Any]:
    removed = await svc.storage.cleanup_sessions()
    return {"message": "Session cleanup completed successfully", "removed": removed}
