"""Opening an HTTP stream (SSE or NDJSON, see :mod:`pygw.ws.streams`): admitted like a
WebSocket upgrade (:meth:`Hub.admit`: connection cap, connect rate, Origin, token, session),
every channel checked as a WebSocket ``subscribe`` is (400, 403, 404 refuse the request), then
registered and subscribed — recovering from the positions the client gives — before the answer
starts, so that everything up to the live stream leaves with the status line.

Positions: ``since`` maps channels to (epoch, offset); an SSE ``Last-Event-ID: <epoch>:<offset>``
names the position in the channel of the last event received, which is the channel whose epoch it
is (epochs are random per channel stream): it is tried for every channel with history that has no
position of its own (or an older one of that epoch), and recovers the one it belongs to. Every
channel with history that was given a position and cannot be recovered from it gets
``{"type":"not_recovered",...}`` before its ``subscribed`` frame (whose ``recovered`` is false),
so a client never takes a gap for a quiet channel.
"""

from __future__ import annotations

import functools
from typing import Any

from pygw.core.codes import CLOSE_GOING_AWAY
from pygw.core.errors import BadRequest, LimitReached, Unauthenticated
from pygw.transport.types import Response, StreamResponse
from pygw.ws.streams import CONTENT_TYPES, KINDS, STREAM_HEADERS, StreamConnection


def parse_last_event_id(value: str) -> tuple[str, int]:
    """``<epoch>:<offset>`` -> (epoch, offset); BadRequest otherwise."""
    epoch, sep, offset = value.strip().rpartition(":")
    if not sep or not epoch or not offset.isdigit():
        raise BadRequest(f"Invalid Last-Event-ID: {value[:64]!r} (expected <epoch>:<offset>)")
    return epoch, int(offset)


def parse_since_query(value: str) -> dict[str, tuple[str, int]]:
    """``since=<channel>:<epoch>:<offset>,...`` (a query parameter) -> positions."""
    positions: dict[str, tuple[str, int]] = {}
    for item in filter(None, value.split(",")):
        channel, sep, rest = item.rpartition(":")
        if sep:
            channel, sep, epoch = channel.rpartition(":")
        if not sep or not channel or not epoch or not rest.isdigit():
            raise BadRequest(
                f"Invalid since position: {item[:64]!r} (expected <channel>:<epoch>:<offset>)"
            )
        positions[channel] = (epoch, int(rest))
    return positions


async def open_stream(
    hub: Any,
    kind: str,
    *,
    path: str,
    headers: dict[str, str],
    client_ip: str,
    token: str,
    session_id: str | None,
    channels: list[str],
    since: dict[str, tuple[str, int]],
    last_event_id: str | None = None,
) -> Response:
    """The stream's answer (a :class:`StreamResponse`) on ``hub`` (a :class:`pygw.ws.hub.Hub`),
    or a refusal: raises Unauthenticated (401), Forbidden (403: a channel), BadRequest (400),
    NotFound (404), LimitReached (429: more channels than ``PYGW_WS_MAX_SUBSCRIPTIONS``), or
    returns the response of :meth:`Hub.admit` (503, 429, 403 for a foreign Origin)."""
    if kind not in KINDS:
        raise ValueError(f"unknown stream kind {kind!r}")
    channels = list(dict.fromkeys(channels))
    cap = hub.subscriptions.max_per_connection  # PYGW_WS_MAX_SUBSCRIPTIONS, as for a WebSocket
    if cap and len(channels) > cap:
        raise LimitReached(f"Too many channels: {len(channels)} (at most {cap} per connection)")
    resume = parse_last_event_id(last_event_id) if last_event_id else None
    make = functools.partial(StreamConnection, kind, hub.delivery.streams, hub.on_close)
    admitted = await hub.admit(path, headers, client_ip, token, session_id, make)
    if not isinstance(admitted, StreamConnection):
        return admitted  # 503, 429, or 403 for a foreign Origin
    conn = admitted
    if conn.refused is not None:
        raise Unauthenticated(conn.refused)
    subscriptions = hub.subscriptions
    for channel in channels:
        subscriptions.check_channel("subscribe", conn, channel)
    positions = dict(since)
    if resume is not None:
        for channel in channels:
            if subscriptions.rules.options(channel)[0] == 0:
                continue
            given = positions.get(channel)
            # The id is newer than a position of the same epoch in the URL (EventSource
            # reconnects with the URL it was opened with).
            if given is None or (given[0] == resume[0] and given[1] < resume[1]):
                positions[channel] = resume
    hub.on_open(conn)
    try:
        for channel in channels:
            position = positions.get(channel)
            reply = await subscriptions.subscribe(conn, channel, position)
            if reply is None:
                break  # closed meanwhile (revoked, drained): its close frame is written
            if position is not None and not reply["recovered"]:
                conn.send(
                    {
                        "type": "not_recovered",
                        "channel": channel,
                        "since": {"epoch": position[0], "offset": position[1]},
                        "epoch": reply["epoch"],
                        "offset": reply["offset"],
                    }
                )
            conn.send(reply)
    except BaseException:
        conn.close(CLOSE_GOING_AWAY, "Subscription failed")
        raise
    return StreamResponse(200, b"", CONTENT_TYPES[kind], headers=list(STREAM_HEADERS), owner=conn)
