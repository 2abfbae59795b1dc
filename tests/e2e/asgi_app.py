"""A Starlette application that mounts the pygw ASGI adapter under ``/gw`` (served by granian in
tests/e2e/test_asgi.py). The gateway is configured from the environment, like ``pygw serve``."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Mount, Route

from pygw.asgi import create_app


async def hello(_request: Request) -> JSONResponse:
    return JSONResponse({"app": "host"})


gateway = create_app()
app = Starlette(
    routes=[Route("/hello", hello), Mount("/gw", app=gateway)],
    lifespan=gateway.lifespan,
)
