"""Limits on JSON request bodies (security review items 1, 11, 12), for the entry points to call
before pydantic parses a body: one native pass (:func:`pygw._native.check_json`) that builds
nothing.

- larger than ``max_bytes`` -> 413 "Request body too large", ``detail`` names the limit;
- nested deeper than ``max_depth`` levels (the body object is level 1), an integer outside
  ``[-2**63, 2**64-1]`` (what orjson encodes), a number overflowing a double, an unpaired
  ``\\u`` surrogate escape -> 422 in the validation envelope, one item at ``["body"]`` whose
  ``msg`` names the reason and the byte (``type`` is ``json_depth``, ``json_integer``, ...);
- not JSON at all -> nothing here: pydantic's own 422 says where.
"""

from __future__ import annotations

from pygw._native import JSON_MAX_DEPTH, JSONLimitError, check_json
from pygw.http.errors import HTTPError, validation_error

__all__ = ["JSON_MAX_DEPTH", "check_body"]


def check_body(body: bytes, *, max_bytes: int, max_depth: int = JSON_MAX_DEPTH) -> None:
    """Raise :class:`HTTPError` (413 or 422, see the module) if ``body`` must be refused."""
    try:
        check_json(body, max_bytes=max_bytes, max_depth=max_depth)
    except JSONLimitError as exc:
        if exc.kind == "syntax":
            return
        if exc.status == 413:
            raise HTTPError(413, "Request body too large", exc.message) from None
        item = {"loc": ["body"], "msg": exc.message, "type": f"json_{exc.kind}"}
        raise validation_error([item]) from None
