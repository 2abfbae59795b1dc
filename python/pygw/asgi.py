"""pygw as an ASGI application: the same HTTP API and ``/ws/connect`` served by any ASGI server
(granian, uvicorn), alone or mounted in a Starlette/FastAPI application.

Alone (the ASGI lifespan starts and stops the gateway)::

    # app.py
    from pygw.asgi import create_app
    app = create_app()          # configured from the environment, like `pygw serve`

    $ granian --interface asgi app:app

Mounted (Starlette does not pass lifespan events to mounted apps: give it the gateway's)::

    gateway = create_app()
    app = Starlette(routes=[Mount("/gw", app=gateway)], lifespan=gateway.lifespan)
    # FastAPI: app = FastAPI(lifespan=gateway.lifespan); app.mount("/gw", gateway)

With ``REDIS_URL`` the node is a full cluster member beside ``pygw serve`` nodes. This transport
needs no uWS library (socketify's), so it is also the fallback where that library cannot load;
it is slower than uWS (one writer task per socket, one queued frame per subscriber).
WebSocket compression is the ASGI server's (``PYGW_WS_COMPRESSION`` is the uWS transport's).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from pygw.config import Settings
from pygw.gateway import Gateway
from pygw.transport.asgi import ASGIServer, Receive, Scope, Send

__all__ = ["GatewayASGI", "create_app"]

log = logging.getLogger("pygw")

NOT_STARTED = (
    b'{"error":"Service Unavailable","detail":"the gateway is not started: run the ASGI lifespan'
    b' (mounted apps: lifespan=gateway.lifespan)","status_code":503}'
)


def create_app(config: Settings | Gateway | None = None, **overrides: Any) -> GatewayASGI:
    """An ASGI application serving a gateway: ``config`` is a :class:`Gateway` (e.g. with
    handlers registered with ``@gw.on``), its :class:`Settings`, or None to read the
    environment (``PYGW_*``, ``REDIS_URL``, ``SECRET_KEY``; ``overrides`` as for ``Settings``)."""
    if isinstance(config, Gateway):
        if overrides:
            raise TypeError("overrides apply to Settings, not to a Gateway already built")
        return GatewayASGI(config)
    return GatewayASGI(Gateway(config, **overrides))


class GatewayASGI:
    """The ASGI application (``create_app``): HTTP and WebSocket connections go to the gateway's
    :class:`~pygw.transport.asgi.ASGIServer` once the lifespan started it."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self._server: ASGIServer | None = None
        self._port_known = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            await self._lifespan(receive, send)
            return
        server = self._server
        if server is None:
            await self._not_started(kind, receive, send)
            return
        if not self._port_known:
            self._learn_port(scope)
        if kind == "http":
            await server.http(scope, receive, send)
        elif kind == "websocket":
            await server.websocket(scope, receive, send)

    def _learn_port(self, scope: Scope) -> None:
        """The address and port the ASGI server accepted this connection on
        (``scope["server"]``, not ``HOST``/``PORT``): what the node reports of itself (heartbeat,
        ``ws_url`` without ``PYGW_PUBLIC_URL``). Unix sockets have none; it stays unknown (0)."""
        bound = scope.get("server")
        try:
            port = int(bound[1]) if bound and bound[1] is not None else 0  # granian: a str
        except (TypeError, ValueError, IndexError):
            port = 0
        if bound and port > 0:
            self.gateway.node.port = port
            if bound[0]:
                self.gateway.node.host = str(bound[0])
            self._port_known = True

    # -- lifecycle --------------------------------------------------------------------------------
    async def startup(self) -> None:
        """Start the gateway's services on an ASGI server (once)."""
        if self._server is not None:
            return
        gw = self.gateway
        if gw.settings.ws_compression != "off":
            log.warning(
                "PYGW_WS_COMPRESSION=%s applies to the uWS transport only: under ASGI the server"
                " negotiates permessage-deflate (uvicorn: --ws-per-message-deflate, on by"
                " default; granian: not supported)",
                gw.settings.ws_compression,
            )
        options = gw.ws_options()
        server = ASGIServer(
            gw.http,
            gw.hub,
            ws_path=options.path,
            max_payload_length=options.max_payload_length,
            max_backpressure=options.max_backpressure,
        )
        try:
            await gw.start_on(server)
        except BaseException:
            server.close()
            raise
        self._server = server

    async def shutdown(self) -> None:
        """Stop gracefully (drain, flush pending writes), as ``pygw serve`` does on SIGTERM."""
        if self._server is None:
            return
        self._server = None
        await self.gateway.stop()

    @contextlib.asynccontextmanager
    async def lifespan(self, _app: Any = None) -> AsyncIterator[None]:
        """For a host application's ``lifespan=`` (Starlette, FastAPI)."""
        await self.startup()
        try:
            yield
        finally:
            await self.shutdown()

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.startup()
                except Exception as exc:
                    log.exception("pygw could not start")
                    await send({"type": "lifespan.startup.failed", "message": repr(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                try:
                    await self.shutdown()
                except Exception as exc:
                    log.exception("pygw did not stop cleanly")
                    await send({"type": "lifespan.shutdown.failed", "message": repr(exc)})
                    return
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _not_started(self, kind: str, receive: Receive, send: Send) -> None:
        if kind == "http":
            await send(
                {
                    "type": "http.response.start",
                    "status": 503,
                    "headers": [(b"content-type", b"application/json")],
                }
            )
            await send({"type": "http.response.body", "body": NOT_STARTED})
        elif kind == "websocket":
            await receive()  # websocket.connect
            await send({"type": "websocket.close", "code": 1011})
