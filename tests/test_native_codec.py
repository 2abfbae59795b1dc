"""pygw._native client-frame codec: decode_frame, encode_message, FrameError."""

from __future__ import annotations

import json

import pytest

from pygw._native import ClientFrame, FrameError, decode_frame, encode_message


def refused(payload: bytes | str) -> FrameError:
    with pytest.raises(FrameError) as info:
        decode_frame(payload)
    return info.value


def test_decodes_every_field() -> None:
    raw = (
        b'{"type":"subscribe","id":7,"channel":"chat:room-1","key":"k1",'
        b'"data":{"text":"hi"},"since":{"epoch":"abc123","offset":42}}'
    )
    frame = decode_frame(raw)
    assert isinstance(frame, ClientFrame)
    assert frame.type == "subscribe"
    assert frame.id == b"7"
    assert frame.channel == "chat:room-1"
    assert frame.key == "k1"
    assert frame.data == b'{"text":"hi"}'
    assert (frame.since_epoch, frame.since_offset) == ("abc123", 42)


def test_missing_optional_fields_are_none() -> None:
    frame = decode_frame(b'{"type":"ping"}')
    assert frame.type == "ping"
    assert frame.id is None and frame.channel is None and frame.key is None
    assert frame.data is None
    assert frame.since_epoch is None and frame.since_offset is None


def test_raw_members_are_exact_input_bytes() -> None:
    data = '{ "b" : [1, 2.50, 1e3, "\\u00e9\\n", null] ,"a":{} }'
    raw = f'{{"type":"publish", "id" :  "req\\"1" , "data":   {data}  }}'.encode()
    frame = decode_frame(raw)
    assert frame.id == b'"req\\"1"'
    assert frame.data == data.encode()
    assert json.loads(frame.data) == json.loads(data)


def test_explicit_null_data_is_kept() -> None:
    assert decode_frame(b'{"type":"publish","data":null}').data == b"null"


def test_str_and_bytes_inputs_agree() -> None:
    text = '{"type":"publish","channel":"caf\u00e9","data":"\u00e9t\u00e9"}'
    from_str = decode_frame(text)
    from_bytes = decode_frame(text.encode())
    assert from_str.channel == from_bytes.channel == "caf\u00e9"
    assert from_str.data == from_bytes.data == '"\u00e9t\u00e9"'.encode()


def test_escaped_strings_are_decoded() -> None:
    frame = decode_frame(rb'{"type":"p\u0069ng","channel":"a\/b","key":"\"q\""}')
    assert (frame.type, frame.channel, frame.key) == ("ping", "a/b", '"q"')


def test_json_returns_the_whole_frame() -> None:
    doc = {
        "type": "publish",
        "id": 3,
        "data": {"n": [1, -2, 3.5, True, False, None, "x"], "big": 2**64 - 1},
        "zz": 1,
        "aa": 2,
    }
    raw = json.dumps(doc).encode()
    parsed = decode_frame(raw).json()
    assert parsed == doc
    assert isinstance(parsed, dict) and list(parsed) == list(doc)
    assert decode_frame(json.dumps(doc)).json() == doc


@pytest.mark.parametrize(
    "payload",
    [b"", b"   ", b"{", b"not json", b"[1, 2]", b'"text"', b"42", b"null", b"{} {}", b"\xff\xfe"],
)
def test_invalid_json(payload: bytes) -> None:
    err = refused(payload)
    assert (err.code, err.message, err.id) == (400, "Invalid JSON", None)
    assert str(err) == "Invalid JSON"
    assert isinstance(err, ValueError)


def test_duplicate_members_are_invalid_json() -> None:
    assert refused(b'{"type":"a","type":"b"}').message == "Invalid JSON"


@pytest.mark.parametrize(
    "payload",
    [
        b'{"id":5}',
        b'{"id":5,"type":""}',
        b'{"id":5,"type":1}',
        b'{"id":5,"type":null}',
        b'{"id":5,"type":["x"]}',
    ],
)
def test_missing_message_type_echoes_id(payload: bytes) -> None:
    err = refused(payload)
    assert (err.code, err.message, err.id) == (400, "Missing message type", b"5")


def test_missing_type_without_id() -> None:
    assert refused(b"{}").id is None


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        (b'{"type":"s","id":"r","channel":1}', "channel"),
        (b'{"type":"s","id":"r","channel":null}', "channel"),
        (b'{"type":"s","id":"r","key":{}}', "key"),
        (b'{"type":"s","id":"r","since":"abc"}', "since"),
        (b'{"type":"s","id":"r","since":[]}', "since"),
        (b'{"type":"s","id":"r","since":{"offset":1}}', "since"),
        (b'{"type":"s","id":"r","since":{"epoch":"e"}}', "since"),
        (b'{"type":"s","id":"r","since":{"epoch":5,"offset":1}}', "since"),
        (b'{"type":"s","id":"r","since":{"epoch":"e","offset":-1}}', "since"),
        (b'{"type":"s","id":"r","since":{"epoch":"e","offset":1.5}}', "since"),
        (b'{"type":"s","id":"r","since":{"epoch":"e","offset":"1"}}', "since"),
    ],
)
def test_invalid_fields(payload: bytes, field: str) -> None:
    err = refused(payload)
    assert (err.code, err.message, err.id) == (400, f"Invalid field: {field}", b'"r"')


def test_lone_surrogates_are_invalid_json() -> None:
    assert refused('{"type":"\ud800"}').message == "Invalid JSON"


def test_non_text_payload_is_a_type_error() -> None:
    with pytest.raises(TypeError):
        decode_frame(bytearray(b'{"type":"x"}'))  # type: ignore[arg-type]


def test_encode_message_layout() -> None:
    assert encode_message("chat:1", b'{"a":1}', 5) == (
        b'{"type":"message","channel":"chat:1","data":{"a":1},"offset":5}'
    )
    assert encode_message("chat:1", b"[1, 2]") == (
        b'{"type":"message","channel":"chat:1","data":[1, 2]}'
    )
    assert encode_message("c", b"0", 0).endswith(b',"offset":0}')


def test_encode_message_escapes_the_channel() -> None:
    channel = 'we"ird\\ch\u00e9\n'
    out = encode_message(channel, b'"x"', 1)
    assert json.loads(out) == {"type": "message", "channel": channel, "data": "x", "offset": 1}
    assert b" " not in out.replace(b'"x"', b"")


def test_encoded_message_decodes_back() -> None:
    frame = decode_frame(encode_message("room:a", b'{"k": [true]}', 9))
    assert (frame.type, frame.channel, frame.data) == ("message", "room:a", b'{"k": [true]}')
    assert frame.json() == {
        "type": "message",
        "channel": "room:a",
        "data": {"k": [True]},
        "offset": 9,
    }
