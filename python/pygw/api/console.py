"""``/admin/ui``: the operator's console, a few static files served from the package (no CDN,
works offline). The page holds no authority of its own: it signs in with an admin account and
calls the admin and server API like any other client, and gets live figures over the gateway's
own WebSocket (``admin:stats``, see :mod:`pygw.ws.stats`)."""

from __future__ import annotations

import functools
from pathlib import Path

from pygw.api.services import Services
from pygw.core.errors import NotFound
from pygw.http.routing import Context, Router
from pygw.transport.types import Response

CONSOLE_DIR = Path(__file__).resolve().parent.parent / "static" / "console"
ASSETS = {
    "console.js": b"application/javascript; charset=utf-8",
    "console.css": b"text/css; charset=utf-8",
}
HEADERS = [
    # Only this origin's scripts, styles, API and WebSocket; never framed.
    (
        "Content-Security-Policy",
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self' ws: wss:; form-action 'self'; frame-ancestors 'none'; "
        "base-uri 'none'",
    ),
    ("X-Frame-Options", "DENY"),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
    ("Cache-Control", "no-cache"),
]

router = Router()


@functools.cache
def _read(name: str) -> bytes:
    return (CONSOLE_DIR / name).read_bytes()


@router.get("/admin/ui", include_in_schema=False)
async def console_page(ctx: Context, svc: Services) -> Response:
    return Response(200, _read("index.html"), b"text/html; charset=utf-8", headers=list(HEADERS))


@router.get("/admin/ui/{name}", include_in_schema=False)
async def console_asset(ctx: Context, svc: Services) -> Response:
    name = ctx.params["name"]
    content_type = ASSETS.get(name)
    if content_type is None:
        raise NotFound("Asset not found")
    return Response(200, _read(name), content_type, headers=list(HEADERS))
