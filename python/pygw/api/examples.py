"""``/examples/chat.html`` and ``/clients/js/index.js``: the browser chat example and the
JavaScript client it imports, served read-only from the package so that after ``make run`` a
person opens http://localhost:8000/examples/chat.html (two windows, two users) and chats.

The files live in ``pygw/static/examples/`` and ``pygw/static/clients/`` as symlinks to the
repository's ``examples/chat.html`` and ``clients/js/index.js`` (one copy of each in git); a
built wheel holds their contents (maturin follows symlinks), so an installed pygw serves them
too. The page holds no authority: it signs in through ``/sessions/login`` like any client."""

from __future__ import annotations

import base64
import functools
import hashlib
import re
from pathlib import Path

from pygw.api.services import Services
from pygw.http.routing import Context, Router
from pygw.transport.types import Response

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
CHAT_PAGE = STATIC_DIR / "examples" / "chat.html"
JS_CLIENT = STATIC_DIR / "clients" / "pygw-client.js"
_INLINE = re.compile(rb"<(script|style)\b[^>]*>(.*?)</\1>", re.DOTALL)

router = Router()


def content_security_policy(page: bytes) -> str:
    """Only this origin's scripts plus the page's own inline ``<script>``/``<style>`` blocks
    (by hash), this origin's API and WebSocket; never framed."""
    hashes: dict[bytes, list[str]] = {b"script": [], b"style": []}
    for match in _INLINE.finditer(page):
        digest = base64.b64encode(hashlib.sha256(match.group(2)).digest()).decode()
        hashes[match.group(1)].append(f"'sha256-{digest}'")
    scripts = " ".join(["'self'", *hashes[b"script"]])
    styles = " ".join(hashes[b"style"]) or "'none'"
    return (
        f"default-src 'none'; script-src {scripts}; style-src {styles}; "
        "connect-src 'self' ws: wss:; form-action 'self'; frame-ancestors 'none'; "
        "base-uri 'none'"
    )


@functools.cache
def _page() -> tuple[bytes, list[tuple[str, str]]]:
    body = CHAT_PAGE.read_bytes()
    headers = [
        ("Content-Security-Policy", content_security_policy(body)),
        ("X-Frame-Options", "DENY"),
        ("X-Content-Type-Options", "nosniff"),
        ("Referrer-Policy", "no-referrer"),
        ("Cache-Control", "no-cache"),
    ]
    return body, headers


@functools.cache
def _client() -> bytes:
    return JS_CLIENT.read_bytes()


@router.get("/examples/chat.html", include_in_schema=False)
async def chat_page(ctx: Context, svc: Services) -> Response:
    body, headers = _page()
    return Response(200, body, b"text/html; charset=utf-8", headers=list(headers))


@router.get("/clients/js/index.js", include_in_schema=False)
async def js_client(ctx: Context, svc: Services) -> Response:
    headers = [("X-Content-Type-Options", "nosniff"), ("Cache-Control", "no-cache")]
    return Response(200, _client(), b"application/javascript; charset=utf-8", headers=headers)
