"""pygw.http.bodyguard.check_body: the HTTP face of the native JSON guard, for entry points."""

from __future__ import annotations

import orjson
import pytest

from pygw.http.bodyguard import JSON_MAX_DEPTH, check_body
from pygw.http.errors import HTTPError, error_response


def refusal(body: bytes, **limits: int) -> HTTPError:
    with pytest.raises(HTTPError) as info:
        check_body(body, **{"max_bytes": 1 << 20, **limits})
    return info.value


def test_storable_bodies_and_syntax_errors_pass() -> None:
    check_body(b'{"data": {"n": 18446744073709551615, "s": "\\u00e9"}}', max_bytes=100)
    check_body(b"{not json", max_bytes=100)  # pydantic reports it, with its location
    check_body(b"[" * JSON_MAX_DEPTH + b"]" * JSON_MAX_DEPTH, max_bytes=100)


def test_too_large_is_413() -> None:
    exc = refusal(b'{"data": "' + b"x" * 100 + b'"}', max_bytes=64)
    assert (exc.status, exc.error, exc.detail) == (
        413,
        "Request body too large",
        "JSON larger than 64 bytes",
    )


@pytest.mark.parametrize(
    ("body", "kind", "msg"),
    [
        (
            b'{"data": {"n": 18446744073709551616}}',
            "json_integer",
            "integer outside the 64-bit range [-2**63, 2**64-1] at byte 15",
        ),
        (
            b'{"data": ' + b"[" * 40 + b"]" * 40 + b"}",
            "json_depth",
            "JSON nested deeper than 32 levels at byte 40",
        ),
        (b'{"data": 1e999}', "json_number", "number too large for a double at byte 9"),
        (b'{"data": "\\udc00"}', "json_string", "unpaired UTF-16 surrogate escape at byte 10"),
    ],
)
def test_unstorable_is_422_with_the_reason(body: bytes, kind: str, msg: str) -> None:
    exc = refusal(body)
    assert exc.status == 422
    envelope = orjson.loads(error_response(exc, "/sessions/update/x").body)
    assert envelope["error"] == "Validation Error"
    # The original gateway's 422 detail; the reason is in the item (issue 17, item 6).
    assert envelope["detail"] == "One or more fields failed validation"
    assert envelope["errors"] == [{"loc": ["body"], "msg": msg, "type": kind}]


def test_depth_limit_is_the_callers() -> None:
    check_body(b'{"a": [[1]]}', max_bytes=100, max_depth=3)
    assert refusal(b'{"a": [[1]]}', max_depth=2).status == 422
