"""Transports: the socket layer under pygw's HTTP and WebSocket handling.

:mod:`pygw.transport.uws` (socketify's uWebSockets library, driven from asyncio) is the only one
implemented; the gateway talks to it through the small surface in :mod:`pygw.transport.base`.
"""
