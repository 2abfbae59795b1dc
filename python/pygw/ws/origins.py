"""Which browser pages may open a WebSocket (cross-site WebSocket hijacking): the gateway's own
origin always — the request's ``Host`` (what the browser connected to) or ``PYGW_PUBLIC_URL`` —
plus the origins of ``PYGW_WS_ALLOWED_ORIGINS`` (``*`` = any). Browsers always send ``Origin``
with an upgrade and a page cannot forge it; a request without one is not from a browser page and
is allowed (it could send any Origin anyway)."""

from __future__ import annotations

from collections.abc import Iterable

from pygw.core.weborigin import host_matches, parse_origin, public_origin
from pygw.http.cors import OriginMatcher


class WebSocketOrigins:
    def __init__(self, allowed: Iterable[str], public_url: str | None) -> None:
        self.listed = OriginMatcher(allowed)
        self.public = public_origin(public_url) if public_url else None

    def refusal(self, origin: str | None, host: str | None) -> str | None:
        """None when an upgrade with this ``Origin`` and ``Host`` may proceed, else why not."""
        if origin is None or self.listed.allows(origin):
            return None
        parsed = parse_origin(origin)
        if parsed is not None and (
            parsed == self.public or (host is not None and host_matches(parsed, host))
        ):
            return None
        return (
            f"Origin not allowed: {origin[:200]!r} is neither this gateway's origin nor listed in "
            "PYGW_WS_ALLOWED_ORIGINS"
        )
