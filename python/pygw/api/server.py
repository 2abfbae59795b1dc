"""Server API for backends (SPEC §5): publish, broadcast, push to users, disconnect users,
presence and history. Authorised by an admin token or a configured API key (``X-API-Key``).

Each call reports the deliveries made by *this* node (its local subscribers at publish time);
other nodes deliver to their own subscribers through the broker.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qs

import orjson

from pygw.api.models import BroadcastRequest, DeliveryResponse, PublishRequest, PushRequest
from pygw.api.services import Services
from pygw.core.channels import user_channel
from pygw.core.errors import BadRequest
from pygw.http.errors import validation_error
from pygw.http.routing import Context, Router

TAGS = ("server api",)
_CHANNEL = re.compile(r"^[A-Za-z0-9_\-.:@=/+]{1,255}$")


def check_channel(channel: str) -> str:
    if not _CHANNEL.match(channel) or channel.startswith(":"):
        raise BadRequest(f"Invalid channel: {channel}")
    return channel


def int_query(ctx: Context, name: str, default: int, lo: int, hi: int) -> int:
    values = parse_qs(ctx.request.query_string).get(name)
    if not values:
        return default
    try:
        value = int(values[0])
    except ValueError:
        value = lo - 1
    if not lo <= value <= hi:
        raise validation_error(
            [
                {
                    "loc": ["query", name],
                    "msg": f"Input should be an integer between {lo} and {hi}",
                    "type": "int_range",
                }
            ]
        )
    return value


router = Router()


@router.post(
    "/api/publish",
    auth="server",
    body=PublishRequest,
    response_model=DeliveryResponse,
    summary="Publish to a channel on every node",
    tags=TAGS,
    errors=(400, 401, 403, 422, 503),
)
async def publish(ctx: Context, svc: Services) -> dict[str, Any]:
    body: PublishRequest = ctx.body
    channel = check_channel(body.channel)
    local = svc.connections.subscribers(channel)
    pub = await svc.publisher.publish(channel, orjson.dumps(body.data))
    return {"deliveries": local, "channel": channel, "offset": pub.offset}


@router.post(
    "/api/broadcast",
    auth="server",
    body=BroadcastRequest,
    response_model=DeliveryResponse,
    summary="Publish the same data to several channels",
    tags=TAGS,
    errors=(400, 401, 403, 422, 503),
)
async def broadcast(ctx: Context, svc: Services) -> dict[str, Any]:
    body: BroadcastRequest = ctx.body
    channels = [check_channel(c) for c in body.channels]
    data = orjson.dumps(body.data)
    deliveries = 0
    offsets = {}
    for channel in channels:
        deliveries += svc.connections.subscribers(channel)
        offsets[channel] = (await svc.publisher.publish(channel, data)).offset
    return {"deliveries": deliveries, "channels": len(channels), "offsets": offsets}


@router.post(
    "/api/push/{user_id}",
    auth="server",
    body=PushRequest,
    response_model=DeliveryResponse,
    summary="Send to every connection of a user, on every node",
    tags=TAGS,
    errors=(401, 403, 422, 503),
)
async def push(ctx: Context, svc: Services) -> dict[str, Any]:
    user_id = ctx.params["user_id"]
    local = svc.connections.subscribers(user_channel(user_id))
    await svc.publisher.push(user_id, orjson.dumps(ctx.body.data))
    return {"deliveries": local, "user_id": user_id}


@router.post(
    "/api/disconnect/{user_id}",
    auth="server",
    response_model=DeliveryResponse,
    summary="Close every connection of a user, on every node (1000)",
    tags=TAGS,
    errors=(401, 403, 503),
)
async def disconnect(ctx: Context, svc: Services) -> dict[str, Any]:
    user_id = ctx.params["user_id"]
    local = svc.connections.local_connections(user_id)
    await svc.publisher.disconnect(user_id)
    return {"deliveries": local, "user_id": user_id, "message": "Disconnect requested"}


@router.get(
    "/api/presence/{channel}",
    auth="server",
    summary="Who is subscribed to a channel, on every node",
    tags=TAGS,
    errors=(400, 401, 403, 503),
)
async def presence(ctx: Context, svc: Services) -> dict[str, Any]:
    channel = check_channel(ctx.params["channel"])
    members = await svc.broker.presence(channel)
    return {"channel": channel, "presence": members, "count": len(members)}


@router.get(
    "/api/history/{channel}",
    auth="server",
    summary="Retained publications of a channel after offset `since`",
    tags=TAGS,
    errors=(400, 401, 403, 422, 503),
    query=(
        ("since", "Return publications with offset > since (default 0)", False),
        ("limit", "At most this many, oldest first (default 100, max 10000)", False),
    ),
)
async def history(ctx: Context, svc: Services) -> dict[str, Any]:
    channel = check_channel(ctx.params["channel"])
    since = int_query(ctx, "since", 0, 0, 2**62)
    limit = int_query(ctx, "limit", 100, 1, 10_000)
    epoch, top = await svc.broker.top(channel)
    items = await svc.broker.history(channel, since, limit)
    return {
        "channel": channel,
        "epoch": epoch,
        "offset": top,
        "publications": [
            {"offset": offset, "data": orjson.Fragment(data)} for offset, data in items
        ],
    }
