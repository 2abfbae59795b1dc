"""HTTP streams for clients that cannot hold a WebSocket (see :mod:`pygw.ws.streams`):

- ``GET /sse/connect?channels=a,b`` — server-sent events (``text/event-stream``), for browsers'
  ``EventSource``: the token in ``Authorization: Bearer`` or ``?token=`` (EventSource cannot set
  headers); a reconnecting browser's ``Last-Event-ID`` resumes where it stopped;
- ``POST /stream/connect`` — newline-delimited JSON (``application/x-ndjson``) for programs:
  the token in ``Authorization: Bearer``; channels and positions in the JSON body
  ``{"channels": [...], "since": {"<channel>": {"epoch": E, "offset": N}}}`` or the query.

Both deliver the frames a WebSocket client gets (``connected``, ``subscribed``, publications
with their offsets, pushes to the user, ``ping``), and end with ``{"type":"close",...}`` where a
WebSocket would get a close frame.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

import orjson

from pygw.api.services import Services
from pygw.auth.bearer import bearer_token
from pygw.core.errors import BadRequest
from pygw.http.routing import Context, Router
from pygw.transport.types import Response
from pygw.ws.streamopen import parse_since_query

TAGS = ("streams",)
ERRORS = (400, 401, 403, 404, 429, 503)
QUERY = (
    ("channels", "Channels to subscribe to, comma-separated (the user's own is always in)", False),
    ("since", "Positions to resume from: <channel>:<epoch>:<offset>, comma-separated", False),
    ("token", "The access token, when the client cannot send an Authorization header", False),
    (
        "last_event_id",
        "SSE: the id of the last event received, for a new EventSource (Last-Event-ID wins)",
        False,
    ),
    ("session_id", "The session to attach to (default: the token's)", False),
)

router = Router()


def _query(ctx: Context) -> dict[str, list[str]]:
    return parse_qs(ctx.request.query_string, keep_blank_values=True)


def _channels(values: list[str]) -> list[str]:
    return [c.strip() for value in values for c in value.split(",") if c.strip()]


def _token(ctx: Context, query: dict[str, list[str]], allow_query: bool) -> str:
    header = ctx.request.headers.get("authorization")
    if header or not allow_query:
        return bearer_token(header)
    token = query.get("token", [""])[0]
    if not token:
        return bearer_token(None)
    return token


async def _open(ctx: Context, svc: Services, kind: str, **request: Any) -> Response:
    req = ctx.request
    result: Response = await svc.connections.open_stream(
        kind,
        path=req.path,
        headers=req.headers,
        client_ip=req.client_ip,
        **request,
    )
    return result


@router.get(
    "/sse/connect",
    summary="Server-sent events: channel publications and pushes as an EventSource stream",
    tags=TAGS,
    errors=ERRORS,
    query=QUERY,
    all_headers=True,
)
async def sse_connect(ctx: Context, svc: Services) -> Response:
    if ctx.request.method == "HEAD":
        return Response(200, b"", b"text/event-stream")
    query = _query(ctx)
    return await _open(
        ctx,
        svc,
        "sse",
        token=_token(ctx, query, allow_query=True),
        session_id=query.get("session_id", [None])[0],
        channels=_channels(query.get("channels", [])),
        since=parse_since_query(",".join(query.get("since", []))),
        last_event_id=ctx.request.headers.get("last-event-id")
        or query.get("last_event_id", [None])[0],
    )


def _body_positions(raw: Any) -> dict[str, tuple[str, int]]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise BadRequest('"since" must be an object: {"<channel>": {"epoch": E, "offset": N}}')
    positions: dict[str, tuple[str, int]] = {}
    for channel, position in raw.items():
        epoch = position.get("epoch") if isinstance(position, dict) else None
        offset = position.get("offset") if isinstance(position, dict) else None
        if not isinstance(epoch, str) or not isinstance(offset, int) or offset < 0:
            raise BadRequest(
                f'Invalid position for {channel!r}: expected {{"epoch": <string>, '
                '"offset": <integer >= 0>}'
            )
        positions[channel] = (epoch, offset)
    return positions


@router.post(
    "/stream/connect",
    summary="HTTP streaming: channel publications and pushes as newline-delimited JSON",
    tags=TAGS,
    errors=ERRORS,
    query=QUERY[:2] + QUERY[4:],
    all_headers=True,
)
async def stream_connect(ctx: Context, svc: Services) -> Response:
    query = _query(ctx)
    token = _token(ctx, query, allow_query=False)
    channels = _channels(query.get("channels", []))
    since = parse_since_query(",".join(query.get("since", [])))
    if ctx.request.body:
        try:
            body = orjson.loads(ctx.request.body)
        except orjson.JSONDecodeError:
            raise BadRequest("The body must be JSON") from None
        if not isinstance(body, dict):
            raise BadRequest('The body must be an object: {"channels": [...], "since": {...}}')
        listed = body.get("channels", [])
        if not isinstance(listed, list) or not all(isinstance(c, str) for c in listed):
            raise BadRequest('"channels" must be a list of channel names')
        channels += listed
        since.update(_body_positions(body.get("since")))
    return await _open(
        ctx,
        svc,
        "ndjson",
        token=token,
        session_id=query.get("session_id", [None])[0],
        channels=channels,
        since=since,
    )
