"""A Redis pub/sub subscriber connection that survives Redis restarts.

redis-py's PubSub builds a dict per message; this link feeds the socket into hiredis' C parser
and hands ``(channel, payload)`` bytes straight to a callback, so one node can take in hundreds of
thousands of publications a second. It keeps the set of channels the node wants; after a lost
connection it reconnects with exponential backoff, subscribes to all of them again and reports
the gap (``on_reconnect``) so the node can resynchronise what it may have missed.

With ``sharded=True`` it speaks sharded pub/sub (``SSUBSCRIBE``, Redis 7) to one node of a Redis
Cluster: :class:`pygw.broker.sharded.ShardedPubSub` keeps one such link per primary. A sharded
link reports trouble (``on_trouble``) when the node refuses a subscription (``-MOVED``: the slot
is served elsewhere) or unsubscribes it by itself (the slot migrated, or the node is no longer a
primary), so its owner can look up the slot map again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections import deque
from collections.abc import Callable
from typing import Any

import hiredis
from redis.asyncio.connection import parse_url

log = logging.getLogger("pygw.broker")

OnMessage = Callable[[bytes, bytes], None]


def command(*parts: bytes) -> bytes:
    """One RESP command."""
    out = [b"*%d\r\n" % len(parts)]
    for p in parts:
        out.append(b"$%d\r\n%s\r\n" % (len(p), p))
    return b"".join(out)


class Endpoint:
    """Where and how to connect (host, port, credentials, TLS), from a ``redis://`` URL."""

    def __init__(self, url: str, *, connect_timeout: float = 2.0) -> None:
        options: dict[str, Any] = dict(parse_url(url))
        self.host = str(options.get("host", "localhost"))
        self.port = int(options.get("port", 6379))
        self.username: str | None = options.get("username")
        self.password: str | None = options.get("password")
        self.ssl = url.startswith("rediss://")
        self.connect_timeout = connect_timeout

    def at(self, host: str, port: int) -> Endpoint:
        """The same credentials at another address (another node of a cluster)."""
        other = object.__new__(Endpoint)
        other.__dict__.update(self.__dict__)
        other.host, other.port = host, port
        return other

    async def open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """A connection, authenticated when the URL has credentials."""
        ctx = ssl.create_default_context() if self.ssl else None
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(self.host, self.port, ssl=ctx), self.connect_timeout
        )
        if self.password:
            auth = [b"AUTH"]
            if self.username:
                auth.append(self.username.encode())
            auth.append(self.password.encode())
            try:
                reply = await self.request(reader, writer, command(*auth))
            except BaseException:
                writer.close()
                raise
            if isinstance(reply, Exception):
                writer.close()
                raise ConnectionError(f"Redis AUTH failed: {reply}")
        return reader, writer

    async def request(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes
    ) -> Any:
        """Send one command and read its reply (not for a connection in subscribed mode)."""
        writer.write(request)
        await writer.drain()
        parser = hiredis.Reader()
        while True:
            data = await asyncio.wait_for(reader.read(1 << 16), self.connect_timeout)
            if not data:
                raise ConnectionError("Redis closed the connection")
            parser.feed(data)
            reply = parser.gets()
            if reply is not False:
                return reply


class PubSubLink:
    def __init__(
        self,
        url: str,
        on_message: OnMessage,
        on_reconnect: Callable[[], None],
        *,
        endpoint: Endpoint | None = None,
        sharded: bool = False,
        on_trouble: Callable[[], None] | None = None,
        connect_timeout: float = 2.0,
        subscribe_timeout: float = 3.0,
        max_backoff: float = 5.0,
    ) -> None:
        self.endpoint = endpoint or Endpoint(url, connect_timeout=connect_timeout)
        self.on_message = on_message
        self.on_reconnect = on_reconnect
        self.on_trouble = on_trouble
        self.sharded = sharded
        self._subscribe = b"SSUBSCRIBE" if sharded else b"SUBSCRIBE"
        self._unsubscribe = b"SUNSUBSCRIBE" if sharded else b"UNSUBSCRIBE"
        self._messages = (b"smessage", b"message") if sharded else (b"message",)
        self._subscribed_kind = b"ssubscribe" if sharded else b"subscribe"
        self._unsubscribed_kind = b"sunsubscribe" if sharded else b"unsubscribe"
        self.connect_timeout = connect_timeout
        self.subscribe_timeout = subscribe_timeout
        self.max_backoff = max_backoff
        self.wanted: set[bytes] = set()
        self.confirmed: set[bytes] = set()
        """Channels the server confirmed on the current connection."""
        self._confirm: dict[bytes, list[asyncio.Future[None]]] = {}
        self._writer: asyncio.StreamWriter | None = None
        self._outbox: list[tuple[bool, bytes]] = []
        """(subscribe?, channel) queued in this event-loop iteration (see :meth:`_send`)."""
        self._sent: deque[tuple[bool, bytes]] = deque()
        """(subscribe?, channel) written and not answered yet, in order."""
        self._task: asyncio.Task[None] | None = None
        self._connected = asyncio.Event()
        self._closing = False
        self.reconnects = 0

    @property
    def host(self) -> str:
        return self.endpoint.host

    @property
    def port(self) -> int:
        return self.endpoint.port

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def is_confirmed(self, channel: bytes) -> bool:
        """True when publications to ``channel`` reach this link right now."""
        return channel in self.confirmed and self.connected

    async def start(self, initial: set[bytes]) -> None:
        """Connect and subscribe to ``initial``. If Redis is unreachable the link keeps trying
        in the background (and subscribers wait, up to their timeout)."""
        self.run(initial)
        try:
            await asyncio.wait_for(self._wait_confirmed(initial), self.connect_timeout)
        except TimeoutError:
            log.warning("Redis pub/sub not reachable at %s:%d yet; retrying", self.host, self.port)

    def run(self, initial: set[bytes]) -> None:
        """Start connecting in the background, wanting ``initial``."""
        self.wanted |= initial
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def close(self) -> None:
        self._closing = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        if self._writer is not None:
            self._writer.close()
        for waiters in self._confirm.values():
            for fut in waiters:
                if not fut.done():
                    fut.cancel()
        self._confirm.clear()

    async def subscribe(self, channel: bytes) -> None:
        """Subscribe; returns when Redis confirmed (publications from then on reach us).

        While disconnected the channel is remembered and subscribed on reconnection; raises
        TimeoutError if that does not happen within ``subscribe_timeout`` seconds, and
        :class:`SubscribeRefused` if the server refuses it (a sharded link: MOVED)."""
        self.wanted.add(channel)
        await asyncio.wait_for(self._wait_confirmed({channel}), self.subscribe_timeout)

    def add(self, channel: bytes) -> None:
        """Want ``channel`` without waiting for the confirmation."""
        if channel not in self.wanted:
            self.wanted.add(channel)
            self._send(True, channel)

    def unsubscribe(self, channel: bytes) -> None:
        self.wanted.discard(channel)
        self.confirmed.discard(channel)
        self._send(False, channel)

    # -- internals ---------------------------------------------------------------------------------
    async def _wait_confirmed(self, channels: set[bytes]) -> None:
        loop = asyncio.get_running_loop()
        futures = []
        for ch in channels:
            fut: asyncio.Future[None] = loop.create_future()
            self._confirm.setdefault(ch, []).append(fut)
            futures.append(fut)
            self._send(True, ch)
        try:
            await asyncio.gather(*futures)
        finally:
            for ch, fut in zip(channels, futures, strict=False):
                waiters = self._confirm.get(ch)
                if waiters is not None and fut in waiters:
                    waiters.remove(fut)
                    if not waiters:
                        del self._confirm[ch]

    def _send(self, subscribe: bool, channel: bytes) -> None:
        """Queue a command; those queued in one event-loop iteration leave in one write (a
        connect storm subscribing many channels would cost one syscall each otherwise).
        Dropped while disconnected: the reconnection subscribes everything wanted."""
        if self._writer is None or not self.connected:
            return
        if not self._outbox:
            asyncio.get_running_loop().call_soon(self._flush_outbox)
        self._outbox.append((subscribe, channel))

    def _flush_outbox(self) -> None:
        out, self._outbox = self._outbox, []
        if out and self._writer is not None and self.connected:
            self._write(out)

    def _write(self, commands: list[tuple[bool, bytes]]) -> None:
        """One command per channel (a sharded SSUBSCRIBE takes channels of one slot only)."""
        assert self._writer is not None
        self._sent.extend(commands)
        self._writer.write(
            b"".join(
                command(self._subscribe if sub else self._unsubscribe, ch) for sub, ch in commands
            )
        )

    async def _open(self) -> asyncio.StreamReader:
        reader, writer = await self.endpoint.open()
        self._writer = writer
        self._sent.clear()
        self.confirmed.clear()
        self._connected.set()
        # Subscribe to everything wanted (first start or after a reconnect).
        if self.wanted:
            self._write([(True, ch) for ch in sorted(self.wanted)])
        return reader

    async def _run(self) -> None:
        backoff = 0.1
        first = True
        while not self._closing:
            try:
                reader = await self._open()
            except (OSError, ConnectionError, TimeoutError) as exc:
                log.debug("pub/sub connect to %s:%d failed: %s", self.host, self.port, exc)
                if self.on_trouble is not None:
                    self.on_trouble()
                await asyncio.sleep(backoff)
                backoff = min(self.max_backoff, backoff * 2)
                continue
            backoff = 0.1
            if not first:
                self.reconnects += 1
                log.info("pub/sub link re-established (%d channels)", len(self.wanted))
                self.on_reconnect()
            first = False
            try:
                await self._read(reader)
            except (OSError, ConnectionError) as exc:
                log.warning("pub/sub link to %s:%d lost (%s)", self.host, self.port, exc)
            else:
                if not self._closing:
                    log.warning("Redis %s:%d closed the pub/sub connection", self.host, self.port)
            finally:
                self._connected.clear()
                self.confirmed.clear()
                writer, self._writer = self._writer, None
                if writer is not None:
                    writer.close()
            if not self._closing and self.on_trouble is not None:
                self.on_trouble()

    async def _read(self, reader: asyncio.StreamReader) -> None:
        parser = hiredis.Reader()
        on_message = self.on_message
        messages = self._messages
        while True:
            data = await reader.read(1 << 16)
            if not data:
                return
            parser.feed(data)
            while True:
                item = parser.gets()
                if item is False:
                    break
                if isinstance(item, list) and len(item) >= 3:
                    kind = item[0]
                    if kind in messages:
                        try:
                            on_message(item[1], item[2])
                        except Exception:
                            log.exception("pub/sub message handler failed")
                    elif kind == self._subscribed_kind:
                        self._answered(True, item[1])
                        if item[1] in self.wanted:
                            self.confirmed.add(item[1])
                        for fut in self._confirm.pop(item[1], ()):
                            if not fut.done():
                                fut.set_result(None)
                    elif kind == self._unsubscribed_kind:
                        self._unsubscribed(item[1])
                elif isinstance(item, Exception):
                    self._refused(item)

    def _unsubscribed(self, channel: bytes) -> None:
        if self._answered(False, channel) or channel not in self.wanted:
            return
        # Unsubscribed by the server: its slot moved (or the node is no longer a primary). The
        # owner finds the new home.
        self.confirmed.discard(channel)
        log.info("pub/sub: %s:%d dropped %r", self.host, self.port, channel)
        if self.on_trouble is not None:
            self.on_trouble()

    def _answered(self, subscribe: bool, channel: bytes) -> bool:
        """Match a confirmation with the command it answers; False if it answers none."""
        if self._sent and self._sent[0] == (subscribe, channel):
            self._sent.popleft()
            return True
        return False

    def _refused(self, error: Exception) -> None:
        sent = self._sent.popleft() if self._sent else None
        log.warning("pub/sub error reply from %s:%d: %s", self.host, self.port, error)
        if sent is not None and sent[0]:
            for fut in self._confirm.pop(sent[1], ()):
                if not fut.done():
                    fut.set_exception(SubscribeRefused(str(error)))
        if self.on_trouble is not None:
            self.on_trouble()


class SubscribeRefused(ConnectionError):
    """The server refused a subscription (e.g. ``MOVED``: another node serves its slot)."""
