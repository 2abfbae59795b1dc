"""The HTTP API: endpoints as top-level functions ``endpoint(ctx, svc)`` declared on one router
per module, and the :class:`~pygw.api.services.Services` they use.

- :mod:`pygw.api.sessions`: accounts, login/logout/refresh, sessions, connection records;
- :mod:`pygw.api.health`: health endpoints; :mod:`pygw.api.metrics`: ``/metrics``;
- :mod:`pygw.api.admin`: ``/admin/*``; :mod:`pygw.api.console`: the operator's console;
- :mod:`pygw.api.examples`: the browser chat example and the JavaScript client it uses;
- :mod:`pygw.api.server`: the server API for backends (publish, push, presence, history);
- :mod:`pygw.api.streams`: ``/sse/connect`` and ``/stream/connect`` (HTTP streams);
- :mod:`pygw.api.proxy`: dynamic routes and the proxy;
- :mod:`pygw.api.docs`: ``/openapi.json``, ``/docs``, ``/redoc``;
- :mod:`pygw.api.models`: request and response bodies (pydantic).
"""

from __future__ import annotations

from pygw.api import (
    admin,
    console,
    docs,
    examples,
    health,
    metrics,
    proxy,
    server,
    sessions,
    streams,
)
from pygw.http.routing import Router


def build_router() -> Router:
    """Every route of the API (the docs last: they describe the routes before them)."""
    router = Router()
    for module in (
        sessions,
        health,
        admin,
        console,
        examples,
        server,
        streams,
        metrics,
        proxy,
        docs,
    ):
        router.include(module.router)
    return router
