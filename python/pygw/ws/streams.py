"""HTTP streams: clients that cannot hold a WebSocket receive what a WebSocket subscriber
receives, as server-sent events (``GET /sse/connect``, ``text/event-stream``) or as
newline-delimited JSON (``POST /stream/connect``, ``application/x-ndjson``).

A stream is a :class:`StreamConnection`: a :class:`~pygw.ws.connection.Connection` in the hub's
registry like any WebSocket, so the keep-alive, token expiry, revocation, logout, drain and the
slow-reader cut-off act on it as on a WebSocket. What differs is how frames are written:

- every frame is the JSON a WebSocket client gets, one SSE event (``data: <frame>``) or one line;
- publications of channels with history are SSE events with ``id: <epoch>:<offset>``, so a
  browser's ``Last-Event-ID`` names where it stopped;
- keep-alive pings are ``: ping`` comments (SSE) or the WebSocket ping frame (NDJSON);
- closing sends ``{"type":"close","code","reason"}`` and ends the response.

:class:`StreamTopics` is the streams' side of the topics a publication goes to: the hub's
delivery hands it each envelope once, it wraps it once per format (one bytes object shared by
every stream of the topic) and the transport writes that to each stream (natively for uWS),
right after the callback that published, a burst of publications in one write per stream.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any, Protocol

import orjson

from pygw.ws.connection import Connection

SSE = "sse"
NDJSON = "ndjson"
KINDS = (SSE, NDJSON)
SSE_PING = b": ping\n\n"
SEND_DROPPED = 2

CONTENT_TYPES = {SSE: b"text/event-stream", NDJSON: b"application/x-ndjson"}
STREAM_HEADERS = [("Cache-Control", "no-cache"), ("X-Accel-Buffering", "no")]
"""No caching, and no buffering by nginx (it would hold events back)."""


def sse_event(frame: bytes, event_id: bytes | None = None) -> bytes:
    """One SSE event carrying ``frame`` (single-line JSON) as its data."""
    if event_id is None:
        return b"data: " + frame + b"\n\n"
    return b"id: " + event_id + b"\ndata: " + frame + b"\n\n"


def ndjson_line(frame: bytes) -> bytes:
    return frame + b"\n"


class StreamWriter(Protocol):
    """The transport's side (``Server.write_streams``)."""

    def write_streams(self, streams: Any, data: bytes) -> int: ...


class StreamTopics:
    """topic -> the streams subscribed to it, by format."""

    def __init__(self) -> None:
        self.topics: dict[bytes, tuple[set[Any], set[Any]]] = {}
        """topic -> (SSE streams, NDJSON streams): the transport's stream objects."""
        self._writer: StreamWriter | None = None
        self._pending: list[tuple[bytes, bytes, bytes | None]] = []

    def start(self, writer: StreamWriter) -> None:
        self._writer = writer

    def add(self, topic: bytes, kind: str, stream: Any) -> None:
        if self._pending:
            # What is pending was published before this stream subscribed (a subscribe sends
            # it from the recent publications already): flush it to the others first.
            self.flush()
        entry = self.topics.get(topic)
        if entry is None:
            entry = self.topics[topic] = (set(), set())
        entry[kind == NDJSON].add(stream)

    def replace(self, topic: bytes, kind: str, old: Any, new: Any) -> None:
        """``new`` takes ``old``'s place (what is pending goes to ``new``)."""
        entry = self.topics.get(topic)
        if entry is not None:
            streams = entry[kind == NDJSON]
            streams.discard(old)
            streams.add(new)

    def remove(self, topic: bytes, kind: str, stream: Any) -> None:
        entry = self.topics.get(topic)
        if entry is None:
            return
        entry[kind == NDJSON].discard(stream)
        if not entry[0] and not entry[1]:
            del self.topics[topic]

    def count(self, topic: bytes) -> int:
        entry = self.topics.get(topic)
        return len(entry[0]) + len(entry[1]) if entry is not None else 0

    def publish(self, topic: bytes, frame: bytes, event_id: bytes | None = None) -> int:
        """``frame`` to every stream of ``topic``, written right after the current callback
        together with the publications that follow it in the same loop iteration (see
        :meth:`flush`); returns how many streams it goes to."""
        if not self._pending:
            asyncio.get_running_loop().call_soon(self.flush)
        self._pending.append((topic, frame, event_id))
        return self.count(topic)

    def flush(self) -> None:
        """Write the pending publications: each run of consecutive ones to the same topic is
        wrapped once per format and joined into one chunk written to each of its streams (one
        write per stream for a burst, as uWS batches a burst of topic publishes per socket)."""
        pending, self._pending = self._pending, []
        writer = self._writer
        if writer is None:
            return
        i = 0
        while i < len(pending):
            topic = pending[i][0]
            j = i + 1
            while j < len(pending) and pending[j][0] == topic:
                j += 1
            entry = self.topics.get(topic)
            if entry is not None:
                run = pending[i:j]
                if entry[0]:
                    writer.write_streams(entry[0], b"".join(sse_event(f, e) for _, f, e in run))
                if entry[1]:
                    writer.write_streams(entry[1], b"".join(f + b"\n" for _, f, _ in run))
            i = j

    def ping(self, topic: bytes, frame: bytes) -> None:
        """A keep-alive round: ``: ping`` to SSE streams, the ping frame to NDJSON streams."""
        entry = self.topics.get(topic)
        if entry is None or self._writer is None:
            return
        if entry[0]:
            self._writer.write_streams(entry[0], SSE_PING)
        if entry[1]:
            self._writer.write_streams(entry[1], frame + b"\n")


class PendingStream:
    """Where a stream's frames go until the transport started the answer (the subscription and
    the recovery happen before it, so that refusals are plain HTTP errors)."""

    __slots__ = ("chunks", "ended")

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.ended = False

    def write(self, data: bytes) -> int:
        if self.ended:
            return SEND_DROPPED
        self.chunks.append(data)
        return 1

    def end(self) -> bool:
        self.ended = True
        return True

    def buffered_amount(self) -> int:
        """0: what waits here waits for the answer to start (a long recovery), not for a slow
        reader, so the backpressure cut-off does not apply yet."""
        return 0


class StreamConnection(Connection):
    """One SSE or NDJSON client (see the module docstring). It is also the transport's
    ``StreamOwner``: :meth:`first_chunk`, :meth:`attach`, :meth:`closed`."""

    __slots__ = ("gone", "kind", "stream_topics", "topics")

    def __init__(
        self,
        kind: str,
        stream_topics: StreamTopics,
        gone: Callable[[Connection, int, bytes], None],
        **fields: Any,
    ) -> None:
        super().__init__(**fields)
        self.kind = kind
        self.stream_topics = stream_topics
        self.gone: Callable[[Connection, int, bytes], None] | None = gone
        """The hub's close handler, called once (then None)."""
        self.topics: set[bytes] = set()
        self.ws = PendingStream()

    @property
    def welcome(self) -> str:
        return "SSE stream established" if self.kind == SSE else "NDJSON stream established"

    @property
    def last_seen(self) -> float:
        """Streams cannot answer pings: never silent for the keep-alive (a client that stops
        reading is cut off by the backpressure limit instead)."""
        return time.monotonic()

    @last_seen.setter
    def last_seen(self, value: float) -> None:
        return None

    # -- writing -----------------------------------------------------------------------------------
    def send_bytes(self, data: bytes) -> bool:
        ws = self.ws
        if ws is None or self.closing:
            return False
        ws.write(sse_event(data) if self.kind == SSE else data + b"\n")
        return True

    def send_publication(self, channel: str, epoch: str, offset: int, envelope: bytes) -> bool:
        ws = self.ws
        if ws is None or self.closing:
            return False
        if self.kind == SSE:
            event_id = b"%s:%d" % (epoch.encode(), offset) if offset else None
            ws.write(sse_event(envelope, event_id))
        else:
            ws.write(envelope + b"\n")
        return True

    def send_binary(self, message: dict[str, Any]) -> bool:
        return self.send(message)

    def subscribe_topic(self, topic: bytes) -> None:
        if self.ws is None or self.closing or topic in self.topics:
            return  # closed: its topics were dropped already
        self.topics.add(topic)
        self.stream_topics.add(topic, self.kind, self.ws)

    def unsubscribe_topic(self, topic: bytes) -> None:
        if topic in self.topics:
            self.topics.discard(topic)
            self.stream_topics.remove(topic, self.kind, self.ws)

    def buffered_amount(self) -> int:
        ws = self.ws
        return int(ws.buffered_amount()) if ws is not None else 0

    # -- closing -----------------------------------------------------------------------------------
    def close(self, code: int = 1000, reason: str = "") -> None:
        """Send ``{"type":"close","code","reason"}``, end the response, and run the hub's close
        handler (at once: there is no close handshake to wait for)."""
        ws = self.ws
        if ws is None or self.closing:
            return
        frame = orjson.dumps({"type": "close", "code": code, "reason": reason})
        self.send_bytes(frame)
        self.closing = True
        ws.end()
        self._gone(code, reason.encode())

    def _gone(self, code: int, reason: bytes) -> None:
        gone, self.gone = self.gone, None
        if gone is None:
            return
        ws = self.ws
        for topic in self.topics:
            self.stream_topics.remove(topic, self.kind, ws)
        self.topics.clear()
        if not isinstance(ws, PendingStream):
            self.ws = None
        gone(self, code, reason)

    # -- the transport's StreamOwner -----------------------------------------------------------
    def first_chunk(self) -> bytes:
        ws = self.ws
        if isinstance(ws, PendingStream) and ws.chunks:
            return b"".join(ws.chunks)
        return b": \n\n" if self.kind == SSE else b"\n"

    def attach(self, stream: Any) -> None:
        pending = self.ws
        if not isinstance(pending, PendingStream) or pending.ended:
            stream.end()  # closed before the answer started: its close frame went first
            self.ws = None
            return
        self.ws = stream
        for topic in self.topics:
            self.stream_topics.replace(topic, self.kind, pending, stream)

    def closed(self) -> None:
        """The client went away (or the answer never started)."""
        self.closing = True
        self._gone(1006, b"")
        self.ws = None

    def __repr__(self) -> str:
        return f"<StreamConnection {self.id} {self.kind} user={self.user_id!r}>"
