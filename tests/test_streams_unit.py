"""The stream side of delivery (pygw.ws.streams) without a server: how publications are wrapped
and batched, and what a stream closed before its answer started leaves behind."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson

from pygw.ws.connection import Connection
from pygw.ws.streams import NDJSON, SSE, StreamConnection, StreamTopics, sse_event


class Recorder:
    """A transport side that records what it was asked to write, and to whom."""

    def __init__(self) -> None:
        self.writes: list[tuple[frozenset[Any], bytes]] = []

    def write_streams(self, streams: Any, data: bytes) -> int:
        self.writes.append((frozenset(streams), data))
        return len(self.writes[-1][0])


class Stream:
    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.ended = False

    def write(self, data: bytes) -> int:
        self.chunks.append(data)
        return 1

    def end(self) -> bool:
        self.ended = True
        return True

    def buffered_amount(self) -> int:
        return 0


def test_sse_events() -> None:
    assert sse_event(b'{"a":1}') == b'data: {"a":1}\n\n'
    assert sse_event(b'{"a":1}', b"e1:7") == b'id: e1:7\ndata: {"a":1}\n\n'


def test_a_burst_is_wrapped_once_per_publication_and_written_once_per_format() -> None:
    async def run() -> Recorder:
        topics, writer = StreamTopics(), Recorder()
        topics.start(writer)
        sse_streams, ndjson_streams = [object(), object()], [object()]
        for s in sse_streams:
            topics.add(b"room", SSE, s)
        topics.add(b"room", NDJSON, ndjson_streams[0])
        topics.add(b"other", SSE, sse_streams[0])
        assert topics.publish(b"room", b'{"n":1}', b"e:1") == 3
        topics.publish(b"room", b'{"n":2}', b"e:2")
        topics.publish(b"other", b'{"n":3}')
        topics.publish(b"room", b'{"n":4}', b"e:3")
        assert writer.writes == []  # after the callback, not during it
        await asyncio.sleep(0)
        return writer

    writes = asyncio.run(run()).writes
    assert [len(streams) for streams, _ in writes] == [2, 1, 1, 2, 1]
    assert writes[0][1] == sse_event(b'{"n":1}', b"e:1") + sse_event(b'{"n":2}', b"e:2")
    assert writes[1][1] == b'{"n":1}\n{"n":2}\n'
    assert writes[2][1] == sse_event(b'{"n":3}')  # topic order kept: a run per topic
    assert writes[3][1] == sse_event(b'{"n":4}', b"e:3")


def test_a_stream_subscribing_flushes_what_was_published_before_it() -> None:
    async def run() -> Recorder:
        topics, writer = StreamTopics(), Recorder()
        topics.start(writer)
        first, late = object(), object()
        topics.add(b"room", NDJSON, first)
        topics.publish(b"room", b"{}")
        topics.add(b"room", NDJSON, late)  # got it from the recent publications already
        await asyncio.sleep(0)
        assert writer.writes == [(frozenset([first]), b"{}\n")]
        return writer

    asyncio.run(run())


def test_a_stream_closed_before_its_answer_leaves_nothing_behind() -> None:
    topics = StreamTopics()
    gone: list[tuple[int, bytes]] = []

    def on_gone(conn: Connection, code: int, reason: bytes) -> None:
        gone.append((code, reason))

    conn = StreamConnection(NDJSON, topics, on_gone, user_id="u")
    conn.subscribe_topic(b"user:u")
    conn.send({"type": "connected"})
    conn.close(1008, "Token revoked")
    conn.subscribe_topic(b"room")  # what on_open does after a revocation it found
    assert topics.topics == {} and conn.topics == set()
    assert gone == [(1008, b"Token revoked")]
    first = conn.first_chunk()
    assert [orjson.loads(line) for line in first.splitlines()] == [
        {"type": "connected"},
        {"type": "close", "code": 1008, "reason": "Token revoked"},
    ]
    stream = Stream()
    conn.attach(stream)
    assert stream.ended and stream.chunks == [] and conn.ws is None
    conn.closed()  # the transport's abort after that changes nothing
    assert len(gone) == 1
