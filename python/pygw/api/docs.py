"""``/openapi.json``, ``/docs`` (Swagger UI) and ``/redoc``, with every asset served locally from
``pygw/static``: Swagger UI 5 (renders OpenAPI 3.1; the npm package ``swagger-ui-dist``, vendored
by ``make swagger-ui``, version in ``static/swagger-ui/VERSION``) and ReDoc. The pages carry a
Content-Security-Policy that lets them load nothing from anywhere else."""

from __future__ import annotations

import functools
from pathlib import Path

import orjson

from pygw.api.models import ErrorEnvelope
from pygw.api.services import Services
from pygw.core.errors import NotFound
from pygw.http.openapi import build_openapi
from pygw.http.routing import Context, Router
from pygw.transport.types import Response

HTML = b"text/html; charset=utf-8"
STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
SWAGGER_DIR = STATIC_DIR / "swagger-ui"
ASSETS = {
    "swagger-ui.css": (SWAGGER_DIR, b"text/css"),
    "swagger-ui-bundle.js": (SWAGGER_DIR, b"application/javascript"),
    "favicon-32x32.png": (SWAGGER_DIR, b"image/png"),
    "redoc.standalone.js": (STATIC_DIR, b"application/javascript"),
}
PAGE_HEADERS = [
    (
        "Content-Security-Policy",
        # Only this gateway: no CDN, no validator badge, no vendor logo. The UIs inject styles
        # and ReDoc runs its worker from a blob.
        "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline';"
        " img-src 'self' data:; font-src 'self' data:; worker-src 'self' blob:",
    )
]

SWAGGER_PAGE = b"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>pygw API</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" type="image/png" href="/docs/assets/favicon-32x32.png">
<link rel="stylesheet" href="/docs/assets/swagger-ui.css"></head>
<body><div id="swagger-ui"></div>
<script src="/docs/assets/swagger-ui-bundle.js"></script>
<script>window.ui = SwaggerUIBundle({url: "/openapi.json", dom_id: "#swagger-ui",
  deepLinking: true, persistAuthorization: true, validatorUrl: null});</script>
</body></html>"""

REDOC_PAGE = b"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>pygw API</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" type="image/png" href="/docs/assets/favicon-32x32.png"></head>
<body><redoc spec-url="/openapi.json"></redoc>
<script src="/docs/assets/redoc.standalone.js"></script></body></html>"""

DESCRIPTION = (
    "pygw: authentication, sessions and WebSocket delivery. WebSocket endpoint: "
    "`/ws/connect?session_id=<sid>&token=<jwt>` (see the README for its frames)."
)


@functools.cache
def _asset(name: str) -> tuple[bytes, bytes]:
    directory, content_type = ASSETS[name]
    return (directory / name).read_bytes(), content_type


router = Router()


@router.get("/openapi.json", summary="The OpenAPI document", include_in_schema=False)
async def openapi(ctx: Context, svc: Services) -> Response:
    body = svc.cache.get("openapi")
    if body is None:
        doc = build_openapi(
            svc.api_routes,
            title="pygw",
            version=svc.node.version,
            description=DESCRIPTION,
            error_model=ErrorEnvelope,
        )
        body = svc.cache["openapi"] = orjson.dumps(doc)
    return Response(200, body)


@router.get("/docs", include_in_schema=False)
async def docs(ctx: Context, svc: Services) -> Response:
    return Response(200, SWAGGER_PAGE, HTML, headers=list(PAGE_HEADERS))


@router.get("/redoc", include_in_schema=False)
async def redoc(ctx: Context, svc: Services) -> Response:
    return Response(200, REDOC_PAGE, HTML, headers=list(PAGE_HEADERS))


@router.get("/docs/assets/{name}", include_in_schema=False)
async def asset(ctx: Context, svc: Services) -> Response:
    name = ctx.params["name"]
    if name not in ASSETS:
        raise NotFound("Asset not found")
    body, content_type = _asset(name)
    return Response(200, body, content_type, headers=[("Cache-Control", "max-age=86400")])
