"""Transports: the socket layer under pygw's HTTP and WebSocket handling.

:mod:`pygw.transport.types` is what the layers above see (requests, :class:`Response`,
the ``HTTPApp``/``WSApp`` protocols); :mod:`pygw.transport.uws` is the uWebSockets transport
(socketify's library, driven from asyncio); :mod:`pygw.transport.eager` runs a handler's first
step inside the transport's callback.
"""
