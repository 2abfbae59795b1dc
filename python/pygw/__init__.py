"""pygw: a real-time gateway on uWebSockets with a Rust core.

Auth, sessions, WebSockets and channels, on one node or many sharing Redis.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pygw.core.version import __version__

if TYPE_CHECKING:
    from pygw.config import Settings
    from pygw.gateway import Gateway
    from pygw.publisher import Publisher

__all__ = ["Gateway", "Publisher", "Settings", "__version__"]


def __getattr__(name: str) -> Any:
    # Lazy: importing pygw (e.g. for the CLI's --help) must not load the uWS library.
    if name == "Gateway":
        from pygw.gateway import Gateway

        return Gateway
    if name == "Publisher":
        from pygw.publisher import Publisher

        return Publisher
    if name == "Settings":
        from pygw.config import Settings

        return Settings
    raise AttributeError(name)
