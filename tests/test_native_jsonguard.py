"""pygw._native.check_json: one pass over a JSON text refusing what pygw cannot store or relay
(security review items 1, 11, 12), and the same guard inside decode_frame."""

from __future__ import annotations

import json
import random
from typing import Any

import orjson
import pytest
from pydantic import JsonValue, TypeAdapter

from pygw._native import (
    FRAME_ID_MAX_BYTES,
    JSON_MAX_DEPTH,
    FrameError,
    JSONLimitError,
    check_json,
    decode_frame,
)

LOOSE = 1 << 30


def accepts(text: bytes) -> bool:
    try:
        check_json(text, max_bytes=LOOSE)
    except JSONLimitError:
        return False
    return True


def refused(text: bytes | str, **limits: int) -> JSONLimitError:
    with pytest.raises(JSONLimitError) as info:
        check_json(text, **{"max_bytes": LOOSE, **limits})
    return info.value


def test_limits_are_the_documented_ones() -> None:
    assert JSON_MAX_DEPTH == 32
    assert FRAME_ID_MAX_BYTES == 256


@pytest.mark.parametrize(
    "text",
    [
        b"{}",
        b'{"data": {"a": [1, -2.5e10, "x", true, null]}}',
        b"18446744073709551615",
        b"-9223372036854775808",
        '{"caf\u00e9": "\u2603"}',
        b'"\\ud83d\\ude00"',
        b"1.7976931348623157e308",
    ],
)
def test_accepts_json_that_round_trips(text: bytes | str) -> None:
    check_json(text, max_bytes=LOOSE)
    value = TypeAdapter(JsonValue).validate_json(text)
    assert orjson.loads(orjson.dumps(value)) == value


@pytest.mark.parametrize(
    ("text", "kind", "position"),
    [
        (b"[18446744073709551616]", "integer", 1),
        (b'{"a": -9223372036854775809}', "integer", 6),
        (b"[1e400]", "number", 1),
        (b'["ok", "\\ud800"]', "string", 8),
        (b'{"a": 1,}', "syntax", 8),
        (b"\xff", "syntax", 0),
        (b"", "syntax", 0),
    ],
)
def test_refusals_name_the_reason_and_the_byte(text: bytes, kind: str, position: int) -> None:
    err = refused(text)
    assert (err.kind, err.status, err.position) == (kind, 422, position)
    assert str(err) == err.message
    assert err.message.endswith(f"at byte {position}")


def test_values_that_break_orjson_are_exactly_the_refused_ones() -> None:
    """What pydantic parses from an accepted text, orjson can encode; what it refuses for
    range, orjson cannot (the write-behind flush and every response would fail)."""
    for value in (2**64 - 1, 2**64, -(2**63), -(2**63) - 1, 10**30, -(10**30)):
        text = str(value).encode()
        parsed = TypeAdapter(JsonValue).validate_json(text)
        try:
            orjson.dumps(parsed)
            encodable = True
        except TypeError:
            encodable = False
        assert accepts(text) == encodable, value


def test_depth_is_counted_from_the_outermost_container() -> None:
    check_json(b"[" * 32 + b"]" * 32, max_bytes=LOOSE)
    err = refused(b"[" * 33 + b"]" * 33)
    assert (err.kind, err.position) == ("depth", 32)
    assert err.message == "JSON nested deeper than 32 levels at byte 32"
    check_json(b'{"a":[[1]]}', max_bytes=LOOSE, max_depth=3)
    assert refused(b'{"a":[[1]]}', max_depth=2).kind == "depth"
    check_json(b'"scalar"', max_bytes=LOOSE, max_depth=0)
    assert refused(b"[]", max_depth=0).kind == "depth"
    with pytest.raises(ValueError):
        check_json(b"1", max_bytes=LOOSE, max_depth=1025)


def test_a_20000_deep_document_is_refused_without_recursion() -> None:
    deep = b"[" * 20_000 + b"]" * 20_000
    with pytest.raises(RecursionError):
        json.loads(deep)  # what a Python client does with it
    assert refused(deep).position == 32
    assert refused(deep, max_depth=1024).position == 1024


def test_size() -> None:
    check_json(b"[1,2]", max_bytes=5)
    err = refused(b"[1,2]", max_bytes=4)
    assert (err.kind, err.status, err.position) == ("size", 413, None)
    assert err.message == "JSON larger than 4 bytes"


def test_str_and_bytes_agree_and_other_types_are_refused() -> None:
    for doc in ('{"a": 1}', '{"a": 18446744073709551616}', "[" * 40 + "]" * 40):
        outcomes = []
        for text in (doc, doc.encode()):
            try:
                check_json(text, max_bytes=LOOSE)
                outcomes.append(None)
            except JSONLimitError as exc:
                outcomes.append((exc.kind, exc.position))
        assert outcomes[0] == outcomes[1], doc
    assert refused("\ud800").kind == "string"
    with pytest.raises(TypeError):
        check_json(bytearray(b"1"), max_bytes=LOOSE)  # type: ignore[arg-type]


def test_agrees_with_a_parser_on_random_documents() -> None:
    """Seeded: random documents, mutated by a byte; the checker accepts exactly what
    Python's json accepts (minus what it refuses for range, depth or surrogates)."""
    rng = random.Random(1234)

    def doc(depth: int) -> Any:
        pick = rng.randrange(8 if depth < 6 else 5)
        if pick == 0:
            return rng.choice([0, -1, 2**63, -(2**63), 2**64 - 1, 7, 10**5])
        if pick == 1:
            return rng.choice([0.5, -1e-7, 3.25e100, 1e308])
        if pick == 2:
            return rng.choice(["", "x", 'q"uote', "back\\slash", "\u00e9\u2603", "\n\t"])
        if pick in (3, 4):
            return rng.choice([True, False, None])
        if pick == 5:
            return [doc(depth + 1) for _ in range(rng.randrange(4))]
        return {f"k{i}": doc(depth + 1) for i in range(rng.randrange(4))}

    checked = 0
    for _ in range(3000):
        text = json.dumps(doc(0), separators=rng.choice([(",", ":"), (", ", ": ")])).encode()
        if rng.random() < 0.5 and text:
            i = rng.randrange(len(text))
            text = text[:i] + bytes([rng.choice(b'{}[]",:0-9.e\\ tfn')]) + text[i + 1 :]
        try:
            json.loads(text)
            valid = True
        except ValueError:
            valid = False
        accepted = accepts(text)
        if valid and not accepted:
            assert refused(text).kind != "syntax", text  # range, depth or surrogates
            continue
        assert accepted == valid, text
        checked += 1
    assert checked > 2500


# --- the same guard in decode_frame -----------------------------------------------------------


def frame_error(payload: bytes) -> FrameError:
    with pytest.raises(FrameError) as info:
        decode_frame(payload)
    return info.value


def test_frames_nested_too_deep_are_refused_with_the_id() -> None:
    deep = b"[" * 20_000 + b"]" * 20_000
    err = frame_error(b'{"type":"publish","id":"r1","channel":"c","data":' + deep + b"}")
    assert err.code == 400
    assert err.message.startswith("JSON nested deeper than 32 levels at byte ")
    assert err.id == b'"r1"'
    # The id after the refused part is found too.
    err = frame_error(b'{"type":"publish","data":' + deep + b',"id":5}')
    assert err.id == b"5"
    ok = decode_frame(b'{"type":"publish","data":' + b"[" * 31 + b"]" * 31 + b"}")
    assert ok.data == b"[" * 31 + b"]" * 31


def test_frames_with_unstorable_numbers_or_strings_are_refused() -> None:
    err = frame_error(b'{"type":"publish","id":1,"data":{"n":18446744073709551616}}')
    assert err.message == "integer outside the 64-bit range [-2**63, 2**64-1] at byte 37"
    assert err.id == b"1"
    assert frame_error(b'{"type":"publish","data":1e999}').message.startswith("number too")
    assert "surrogate" in frame_error(b'{"type":"publish","data":"\\udfff"}').message


@pytest.mark.parametrize(
    "raw_id",
    [b"{}", b"[1]", b'{"a":{"b":1}}', b'"' + b"x" * (FRAME_ID_MAX_BYTES - 1) + b'"'],
)
def test_ids_must_be_small_scalars(raw_id: bytes) -> None:
    err = frame_error(b'{"type":"ping","id":' + raw_id + b"}")
    assert (err.code, err.message, err.id) == (400, "Invalid field: id", None)


def test_largest_id_is_echoed_verbatim() -> None:
    raw_id = b'"' + b"x" * (FRAME_ID_MAX_BYTES - 2) + b'"'
    assert decode_frame(b'{"type":"ping","id":' + raw_id + b"}").id == raw_id
