"""The installed package's version (``0.0.0`` when running from a source tree)."""

from __future__ import annotations

from importlib import metadata

try:
    __version__ = metadata.version("pygw")
except metadata.PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"
