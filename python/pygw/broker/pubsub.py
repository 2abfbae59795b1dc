"""A Redis pub/sub subscriber connection that survives Redis restarts.

redis-py's PubSub builds a dict per message; this link feeds the socket into hiredis' C parser
and hands ``(channel, payload)`` bytes straight to a callback, so one node can take in hundreds of
thousands of publications a second. It keeps the set of channels the node wants; after a lost
connection it reconnects with exponential backoff, subscribes to all of them again and reports
the gap (``on_reconnect``) so the node can resynchronise what it may have missed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Callable
from typing import Any

import hiredis
from redis.asyncio.connection import parse_url

log = logging.getLogger("pygw.broker")

OnMessage = Callable[[bytes, bytes], None]


def _command(*parts: bytes) -> bytes:
    out = [b"*%d\r\n" % len(parts)]
    for p in parts:
        out.append(b"$%d\r\n%s\r\n" % (len(p), p))
    return b"".join(out)


class PubSubLink:
    def __init__(
        self,
        url: str,
        on_message: OnMessage,
        on_reconnect: Callable[[], None],
        *,
        connect_timeout: float = 2.0,
        subscribe_timeout: float = 3.0,
        max_backoff: float = 5.0,
    ) -> None:
        options: dict[str, Any] = dict(parse_url(url))
        self.host = str(options.get("host", "localhost"))
        self.port = int(options.get("port", 6379))
        self.username: str | None = options.get("username")
        self.password: str | None = options.get("password")
        self.ssl = url.startswith("rediss://")
        self.on_message = on_message
        self.on_reconnect = on_reconnect
        self.connect_timeout = connect_timeout
        self.subscribe_timeout = subscribe_timeout
        self.max_backoff = max_backoff
        self.wanted: set[bytes] = set()
        self._confirm: dict[bytes, list[asyncio.Future[None]]] = {}
        self._writer: asyncio.StreamWriter | None = None
        self._outbox: list[bytes] = []
        """Commands queued in this event-loop iteration (see :meth:`_send`)."""
        self._task: asyncio.Task[None] | None = None
        self._connected = asyncio.Event()
        self._closing = False
        self.reconnects = 0

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    async def start(self, initial: set[bytes]) -> None:
        """Connect and subscribe to ``initial``. If Redis is unreachable the link keeps trying
        in the background (and subscribers wait, up to their timeout)."""
        self.wanted |= initial
        self._task = asyncio.get_running_loop().create_task(self._run())
        try:
            await asyncio.wait_for(self._wait_confirmed(initial), self.connect_timeout)
        except TimeoutError:
            log.warning("Redis pub/sub not reachable at %s:%d yet; retrying", self.host, self.port)

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
        TimeoutError if that does not happen within ``subscribe_timeout`` seconds."""
        self.wanted.add(channel)
        await asyncio.wait_for(self._wait_confirmed({channel}), self.subscribe_timeout)

    def unsubscribe(self, channel: bytes) -> None:
        self.wanted.discard(channel)
        self._send(_command(b"UNSUBSCRIBE", channel))

    # -- internals ---------------------------------------------------------------------------------
    async def _wait_confirmed(self, channels: set[bytes]) -> None:
        loop = asyncio.get_running_loop()
        futures = []
        for ch in channels:
            fut: asyncio.Future[None] = loop.create_future()
            self._confirm.setdefault(ch, []).append(fut)
            futures.append(fut)
            self._send(_command(b"SUBSCRIBE", ch))
        await asyncio.gather(*futures)

    def _send(self, command: bytes) -> None:
        """Queue a command; those queued in one event-loop iteration leave in one write (a
        connect storm subscribes thousands of user channels, one syscall each otherwise).
        Dropped while disconnected: the reconnection subscribes everything wanted."""
        if self._writer is None or not self.connected:
            return
        if not self._outbox:
            asyncio.get_running_loop().call_soon(self._flush_outbox)
        self._outbox.append(command)

    def _flush_outbox(self) -> None:
        out, self._outbox = self._outbox, []
        if out and self._writer is not None and self.connected:
            self._writer.write(b"".join(out))

    async def _open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        ctx = ssl.create_default_context() if self.ssl else None
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(self.host, self.port, ssl=ctx), self.connect_timeout
        )
        if self.password:
            auth = [b"AUTH"]
            if self.username:
                auth.append(self.username.encode())
            auth.append(self.password.encode())
            writer.write(_command(*auth))
            await writer.drain()
            parser = hiredis.Reader()
            while True:
                data = await asyncio.wait_for(reader.read(4096), self.connect_timeout)
                if not data:
                    raise ConnectionError("Redis closed the connection during AUTH")
                parser.feed(data)
                reply = parser.gets()
                if reply is not False:
                    break
            if isinstance(reply, Exception):
                raise ConnectionError(f"Redis AUTH failed: {reply}")
        self._writer = writer
        self._connected.set()
        # Subscribe to everything wanted (first start or after a reconnect).
        if self.wanted:
            writer.write(b"".join(_command(b"SUBSCRIBE", ch) for ch in sorted(self.wanted)))
        return reader, writer

    async def _run(self) -> None:
        backoff = 0.1
        first = True
        while not self._closing:
            try:
                reader, writer = await self._open()
            except (OSError, ConnectionError, TimeoutError) as exc:
                log.debug("pub/sub connect failed: %s", exc)
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
                log.warning("pub/sub link lost (%s); reconnecting", exc)
            else:
                if not self._closing:
                    log.warning("Redis closed the pub/sub connection; reconnecting")
            finally:
                self._connected.clear()
                self._writer = None
                writer.close()

    async def _read(self, reader: asyncio.StreamReader) -> None:
        parser = hiredis.Reader()
        on_message = self.on_message
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
                    if kind == b"message":
                        try:
                            on_message(item[1], item[2])
                        except Exception:
                            log.exception("pub/sub message handler failed")
                    elif kind == b"subscribe":
                        for fut in self._confirm.pop(item[1], ()):
                            if not fut.done():
                                fut.set_result(None)
                elif isinstance(item, Exception):
                    log.warning("pub/sub error reply: %s", item)
