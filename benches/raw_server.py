"""A raw socketify server with NO gateway logic: the ceiling pygw is compared against.

    python -m benches raw_server --port P [--host 127.0.0.1] [--max-seconds S]

It runs on pygw's own transport layer (``pygw.transport.uws``: the native uWS binding over
socketify's library, the same :class:`~pygw.transport.uws.UVBridge` driving libuv from asyncio,
the same :class:`UWSServer`),
so the only difference from ``pygw serve`` is the gateway logic: no auth, no JWT, no storage, no
rate limits, no per-connection bookkeeping, no JSON encoding of replies beyond the minimum the
load generator needs to recognise them.

Wire behaviour (just enough for ``pygw-loadgen``):

- WebSocket ``/ws/connect`` (any query): on open sends ``{"type":"connected"}``.
  A frame starting with ``{"type":"echo"`` is sent back verbatim (the echo ceiling).
  ``subscribe`` → uWS topic subscribe + ``subscribed``; ``publish`` → one uWS publish made from
  asyncio (``call_soon``, so uWS batches per socket, as NOTES.md measured) + ``published``;
  ``ping`` → ``pong``. ``id`` is echoed.
- HTTP ``GET /health`` → a constant small JSON body; ``POST /echo`` → the body back;
  ``POST /api/publish`` ``{"channel","data"}`` → publish from asyncio, ``{"deliveries":n}``.

It stops on SIGTERM/SIGINT, or by itself after ``--max-seconds`` (a safety bound).
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from typing import Any

import orjson

from pygw.transport import uws
from pygw.transport.types import HTTPRequest, Response, UpgradeRequest
from pygw.transport.uws import WSOptions

HEALTH = b'{"status":"healthy","raw":true}'
CONNECTED = b'{"type":"connected"}'
ECHO_PREFIX = b'{"type":"echo"'


class RawSocket:
    __slots__ = ("ws",)

    def __init__(self) -> None:
        self.ws: Any = None


class RawHTTP:
    max_body_bytes = 1 << 20
    header_names: tuple[str, ...] = ("content-length", "transfer-encoding")

    def __init__(self) -> None:
        self.server: uws.UWSServer | None = None

    def wants_all_headers(self, path: str) -> bool:
        return False

    async def handle(self, request: HTTPRequest) -> Response:
        if request.path == "/health":
            return Response(200, HEALTH)
        if request.path == "/echo":
            return Response(200, request.body or b"{}")
        if request.path == "/api/publish" and request.method == "POST":
            msg = orjson.loads(request.body)
            channel = str(msg.get("channel", ""))
            frame = orjson.dumps(
                {"type": "message", "channel": channel, "data": msg.get("data"), "offset": 0}
            )
            assert self.server is not None
            topic = channel.encode()
            n = self.server.num_subscribers(topic)
            asyncio.get_running_loop().call_soon(self.server.publish, topic, frame)
            return Response(200, b'{"deliveries":%d,"channel":%s}' % (n, orjson.dumps(channel)))
        return Response(404, b'{"error":"Not Found"}')

    def error_response(self, request: HTTPRequest, status: int, message: str) -> Response:
        return Response(status, orjson.dumps({"error": message}), close=True)


class RawWS:
    query_names: tuple[str, ...] = ()
    header_names: tuple[str, ...] = ()

    def __init__(self) -> None:
        self.server: uws.UWSServer | None = None
        self.loop: asyncio.AbstractEventLoop | None = None

    async def upgrade(self, request: UpgradeRequest) -> RawSocket:
        return RawSocket()  # uWS holds it (a strong reference) until after on_close

    def on_open(self, sock: RawSocket) -> None:
        uws.ws_send(sock.ws, CONNECTED)

    def on_message(self, sock: RawSocket, data: bytes, opcode: int) -> None:
        if data.startswith(ECHO_PREFIX):
            uws.ws_send(sock.ws, data, opcode)
            return
        try:
            msg = orjson.loads(data)
        except orjson.JSONDecodeError:
            return
        kind = msg.get("type")
        reply: dict[str, Any]
        if kind == "ping":
            reply = {"type": "pong"}
        elif kind == "subscribe":
            channel = str(msg.get("channel", ""))
            uws.ws_subscribe(sock.ws, channel.encode())
            reply = {"type": "subscribed", "channel": channel, "offset": 0, "recovered": False}
        elif kind == "publish":
            channel = str(msg.get("channel", ""))
            frame = orjson.dumps(
                {"type": "message", "channel": channel, "data": msg.get("data"), "offset": 0}
            )
            assert self.server is not None and self.loop is not None
            self.loop.call_soon(self.server.publish, channel.encode(), frame)
            reply = {"type": "published", "channel": channel, "offset": 0}
        elif kind == "pong":
            return
        else:
            reply = {"type": "error", "message": "unknown type"}
        if "id" in msg:
            reply["id"] = msg["id"]
        uws.ws_send(sock.ws, orjson.dumps(reply))

    def on_close(self, sock: RawSocket, code: int, reason: bytes) -> None:
        return None

    def on_pong(self, sock: RawSocket) -> None:
        return None

    def on_drain(self, sock: RawSocket) -> None:
        return None


async def serve(host: str, port: int, max_seconds: float) -> None:
    loop = asyncio.get_running_loop()
    http, ws = RawHTTP(), RawWS()
    # Same uWS socket options as pygw's defaults (gateway.py: 8 x PYGW_WS_MAX_BACKPRESSURE).
    server = uws.UWSServer(loop, http, ws, WSOptions(max_backpressure=8 * 256 * 1024))
    http.server = ws.server = server
    ws.loop = loop
    bound = server.listen(host, port)
    print(f"raw server listening on {host}:{bound}", flush=True)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await asyncio.wait_for(stop.wait(), timeout=max_seconds)
    except TimeoutError:
        print("raw server: --max-seconds reached, stopping", file=sys.stderr, flush=True)
    server.close()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m benches raw_server", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8099)
    parser.add_argument("--max-seconds", type=float, default=1800.0)
    args = parser.parse_args(argv)
    asyncio.run(serve(args.host, args.port, args.max_seconds))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
