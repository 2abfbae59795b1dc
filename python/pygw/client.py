"""pygw's Python client: one WebSocket to a pygw gateway that reconnects on its own (exponential
backoff with full jitter), resubscribes with ``since`` so messages published while it was away
are recovered from the channel's history, answers the server's keep-alive pings and matches
replies to requests by ``id``.

::

    from pygw.client import Client

    async with Client("ws://localhost:8000", token=access_token) as client:
        sub = await client.subscribe("room:lobby")
        await client.publish("room:lobby", {"text": "hi"})
        async for message in sub:
            print(message.channel, message.offset, message.data)

It has the semantics of the JavaScript client in ``clients/js`` (see its README), in Python
naming. It imports only the standard library, ``websockets`` and ``orjson`` (not the gateway:
no uWS library is needed to use it).

Reconnecting: after a close with 1000 (logout, account deletion, a new login, a server
disconnect) the client stops. After 1008 (invalid, expired or revoked token, session mismatch)
it calls ``token`` if that is a callable and reconnects with a *different* token, else stops;
1008 "Pong timeout" and every other close (1001 server shutting down, 1006 network, 1013, ...)
reconnect. A connection from which nothing arrives for 1.5 ping intervals (+ ``silence_grace``)
is considered dead and replaced.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import itertools
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import orjson
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

__all__ = [
    "Client",
    "ClientClosed",
    "ClientError",
    "ConnectionLost",
    "Disconnect",
    "Gap",
    "Message",
    "Presence",
    "PygwError",
    "RequestTimeout",
    "StreamPosition",
    "Subscribed",
    "Subscription",
    "backoff_delay",
    "connect_url",
]

log = logging.getLogger("pygw.client")

CLOSE_NORMAL = 1000
"""Logout, account deletion, a new login, a server disconnect: do not come back."""
CLOSE_ABNORMAL = 1006
"""Closed without a close frame (network cut, server killed, upgrade refused)."""
CLOSE_POLICY = 1008
"""Invalid token or session: come back only with a new token."""
TRANSIENT_POLICY_REASONS = frozenset({"Pong timeout"})
"""1008 reasons about this connection's silence, not its credentials."""

State = Literal["disconnected", "connecting", "connected"]
Event = Literal["connecting", "connected", "disconnected", "error", "message", "frame"]
SubscriptionEvent = Literal["message", "subscribed", "gap", "error"]
TokenSource = Callable[[], str | Awaitable[str | None] | None]
"""Called for the first token when none was given, and after a close with 1008."""
Listener = Callable[..., Any]


# -- errors --------------------------------------------------------------------------------------
class ClientError(Exception):
    """Base of the client's errors."""


class PygwError(ClientError):
    """The server refused a request: an ``{"type":"error","code","message"}`` frame."""

    def __init__(self, code: int, message: str, frame: dict[str, Any]) -> None:
        super().__init__(f"{code} {message}")
        self.code = code
        """HTTP-like: 400 bad request, 403 forbidden, 404 unknown, 429 rate limited, ..."""
        self.message = message
        self.frame = frame


class RequestTimeout(ClientError, TimeoutError):
    """No reply within the request's timeout."""


class ConnectionLost(ClientError):
    """The socket closed after the request was sent and before its reply arrived."""


class ClientClosed(ClientError):
    """The client stopped for good: :meth:`Client.close`, or the server said not to come back."""

    def __init__(self, message: str, code: int, reason: str) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason


# -- values --------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Message:
    """A publication on a channel (``offset`` is None on ``user:<id>`` pushes)."""

    channel: str
    data: Any
    offset: int | None


@dataclass(frozen=True, slots=True)
class StreamPosition:
    """A position in a channel's stream: where a resubscription resumes."""

    epoch: str
    offset: int


@dataclass(frozen=True, slots=True)
class Subscribed:
    epoch: str
    offset: int
    recovered: bool
    """True when a resubscription continued the stream without loss."""
    resubscribed: bool
    """False for the first subscription, True after a reconnect (or with ``since``)."""


@dataclass(frozen=True, slots=True)
class Gap:
    """Messages may have been lost across a reconnect: reload the channel's state."""

    since: StreamPosition
    epoch: str
    offset: int


@dataclass(frozen=True, slots=True)
class Disconnect:
    code: int
    """The close code (1006 when the socket closed without one)."""
    reason: str
    reconnect: bool
    """Whether the client will reconnect on its own."""


@dataclass(frozen=True, slots=True)
class Presence:
    members: dict[str, dict[str, Any]]
    """Client id -> ``{user_id, conn_id, gateway_id}``."""
    count: int


def backoff_delay(
    attempt: int, min_delay: float, max_delay: float, rand: Callable[[], float] = random.random
) -> float:
    """Full jitter: a uniformly random delay up to the capped exponential step."""
    return rand() * min(max_delay, min_delay * 2**attempt)


def connect_url(url: str, token: str | None = None, session_id: str | None = None) -> str:
    """``ws(s)://host[:port]/ws/connect?token=...&session_id=...`` from a base or full URL."""
    parts = urlsplit(url)
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme)
    path = parts.path if parts.path not in ("", "/") else "/ws/connect"
    query = dict(parse_qsl(parts.query))
    if token:
        query["token"] = token
    if session_id:
        query["session_id"] = session_id
    return urlunsplit((scheme, parts.netloc, path, urlencode(query), ""))


def _error(frame: dict[str, Any]) -> PygwError:
    return PygwError(int(frame.get("code", 0)), str(frame.get("message", "")), frame)


class _Emitter:
    """Listeners per event; a coroutine listener runs as a task; a failing one is logged."""

    def __init__(self) -> None:
        self._listeners: dict[str, list[Listener]] = {}
        self._listener_tasks: set[asyncio.Task[Any]] = set()

    def _add(self, event: str, listener: Listener) -> Callable[[], None]:
        self._listeners.setdefault(event, []).append(listener)
        return lambda: self._remove(event, listener)

    def _remove(self, event: str, listener: Listener) -> None:
        with contextlib.suppress(KeyError, ValueError):
            self._listeners[event].remove(listener)

    def _emit(self, event: str, *args: Any) -> None:
        for listener in list(self._listeners.get(event, ())):
            try:
                result = listener(*args)
            except Exception:
                log.exception("a %r listener failed", event)
                continue
            if inspect.isawaitable(result):
                task = asyncio.ensure_future(result)
                self._listener_tasks.add(task)
                task.add_done_callback(self._listener_done)

    def _listener_done(self, task: asyncio.Task[Any]) -> None:
        self._listener_tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("a listener failed", exc_info=task.exception())


class _End:
    """Ends an ``async for`` over a subscription (with ``error`` raised if set)."""

    def __init__(self, error: ClientClosed | None = None) -> None:
        self.error = error


@dataclass(slots=True)
class _Pending:
    message: dict[str, Any]
    future: asyncio.Future[dict[str, Any]]
    sent: bool = False


class Subscription(_Emitter):
    """One channel subscription. Messages are delivered at most once and in offset order;
    across reconnects the client asks for what it missed and reports :class:`Subscribed` with
    ``recovered``, or a :class:`Gap` when history no longer holds it.

    Iterate it (``async for message in sub``) unless it was created with ``on_message``; the
    iteration ends after :meth:`unsubscribe` or :meth:`Client.close`, and raises
    :class:`ClientClosed` when the server ended the client (logout, invalid token).
    """

    def __init__(
        self,
        client: Client,
        channel: str,
        *,
        since: StreamPosition | None = None,
        queue: bool = True,
    ) -> None:
        super().__init__()
        self.client = client
        self.channel = channel
        self.state: Literal["subscribing", "subscribed", "unsubscribed"] = "subscribing"
        self.epoch: str | None = since.epoch if since else None
        """Epoch of the channel's stream (None before the first subscription)."""
        self.offset: int | None = since.offset if since else None
        """Offset of the last message delivered (or of the channel when subscribed)."""
        self.recovered = False
        """Whether the last (re)subscription continued the stream without loss."""
        self._buffer: list[dict[str, Any]] = []
        self._since: StreamPosition | None = None
        self._ever_subscribed = False
        self._queue: asyncio.Queue[Message | _End] | None = asyncio.Queue() if queue else None
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        """Done at the first successful subscription; fails with PygwError if refused."""

    def on(self, event: SubscriptionEvent, listener: Listener) -> Callable[[], None]:
        """Call ``listener`` on ``event``: ``message`` (:class:`Message`), ``subscribed``
        (:class:`Subscribed`), ``gap`` (:class:`Gap`), ``error`` (an exception). Returns a
        function that removes it."""
        return self._add(event, listener)

    @property
    def position(self) -> StreamPosition | None:
        """Where a resubscription would resume (save it to resume after a restart)."""
        if self.epoch is None or self.offset is None:
            return None
        return StreamPosition(self.epoch, self.offset)

    async def presence(self) -> Presence:
        """Who is in the channel now (its namespace must have presence enabled)."""
        reply = await self.client.request({"type": "presence", "channel": self.channel})
        return Presence(reply["presence"], reply["count"])

    async def publish(self, data: Any) -> int:
        """Publish ``data`` to this channel; returns the publication's offset."""
        return await self.client.publish(self.channel, data)

    async def unsubscribe(self) -> None:
        """Stop receiving this channel (and resubscribing it); ends the iteration."""
        if self.state == "unsubscribed":
            return
        self._end()
        self.client._forget(self)
        if self.client.state == "connected":
            await self.client.request({"type": "unsubscribe", "channel": self.channel})

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Message:
        if self._queue is None:
            raise TypeError(f"subscription of {self.channel!r} delivers to its on_message")
        item = await self._queue.get()
        if isinstance(item, _End):
            if item.error is not None:
                raise item.error
            raise StopAsyncIteration
        return item

    # -- driven by the client ------------------------------------------------------------------
    def _subscribe_frame(self) -> dict[str, Any]:
        self.state = "subscribing"
        self._buffer = []
        self._since = self.position
        frame: dict[str, Any] = {"type": "subscribe", "channel": self.channel}
        if self._since is not None:
            frame["since"] = {"epoch": self._since.epoch, "offset": self._since.offset}
        return frame

    def _on_frame(self, frame: dict[str, Any]) -> None:
        if self.state == "subscribing":
            self._buffer.append(frame)
        elif self.state == "subscribed":
            self._deliver(frame)

    def _deliver(self, frame: dict[str, Any]) -> None:
        offset = frame.get("offset")
        if isinstance(offset, int):
            if self.offset is not None and offset <= self.offset:
                return  # already delivered
            self.offset = offset
        message = Message(self.channel, frame.get("data"), offset)
        if self._queue is not None:
            self._queue.put_nowait(message)
        self._emit("message", message)

    def _on_subscribed(self, reply: dict[str, Any]) -> None:
        if self.state != "subscribing":
            return
        since = self._since
        epoch, top = reply["epoch"], reply["offset"]
        # Recovered: the server replayed what was missed, or nothing was published meanwhile.
        recovered = since is not None and (
            reply.get("recovered") is True or (epoch == since.epoch and top == since.offset)
        )
        buffered, self._buffer = self._buffer, []
        self.state = "subscribed"
        self.recovered = recovered
        if not recovered:
            self.offset = None  # a new stream: what was buffered is all new
        self.epoch = epoch
        resubscribed = self._ever_subscribed or since is not None
        self._ever_subscribed = True
        self._emit("subscribed", Subscribed(epoch, top, recovered, resubscribed))
        if since is not None and not recovered:
            self._emit("gap", Gap(since, epoch, top))
        for frame in buffered:
            self._deliver(frame)
        if isinstance(top, int) and (self.offset is None or top > self.offset):
            self.offset = top
        if not self.ready.done():
            self.ready.set_result(None)

    def _on_refused(self, error: PygwError) -> None:
        self._end()
        self.client._forget(self)
        if not self.ready.done():
            self.ready.set_exception(error)
        self._emit("error", error)

    def _end(self) -> None:
        self.state = "unsubscribed"
        self._buffer = []
        if self._queue is not None:
            self._queue.put_nowait(_End())


class Client(_Emitter):
    """A connection to a pygw gateway; see the module docstring.

    ``url`` is the gateway's base (``ws://host:8000``, ``https://...``) or its ``/ws/connect``
    URL. ``token`` is the access token, or a callable (sync or async) returning one;
    ``get_token`` (or a callable ``token``) is called for the first token when none was given,
    and after a close with 1008: a different token reconnects, the same or None stops.

    Events (:meth:`on`): ``connecting`` (``{"attempt": n}``), ``connected`` (the welcome
    frame), ``disconnected`` (:class:`Disconnect`), ``error`` (an exception), ``message``
    (:class:`Message` of a channel without a subscription, e.g. a push on ``user:<id>``),
    ``frame`` (every frame received, as a dict).
    """

    def __init__(
        self,
        url: str,
        *,
        token: str | TokenSource | None = None,
        get_token: TokenSource | None = None,
        session_id: str | None = None,
        request_timeout: float = 10.0,
        connect_timeout: float = 10.0,
        min_reconnect_delay: float = 0.5,
        max_reconnect_delay: float = 30.0,
        silence_grace: float = 2.0,
        max_message_bytes: int | None = 16 * 1024 * 1024,
    ) -> None:
        super().__init__()
        self.url = url
        self.token: str | None = None if callable(token) else token
        self.token_source: TokenSource | None = get_token or (token if callable(token) else None)
        self.session_id = session_id
        self.request_timeout = request_timeout
        self.connect_timeout = connect_timeout
        self.min_reconnect_delay = min_reconnect_delay
        self.max_reconnect_delay = max_reconnect_delay
        self.silence_grace = silence_grace
        self.max_message_bytes = max_message_bytes
        self.state: State = "disconnected"
        self.welcome: dict[str, Any] | None = None
        """The server's ``connected`` frame of the current connection."""
        self._wanted = False
        self._ws: ClientConnection | None = None
        self._runner: asyncio.Task[None] | None = None
        self._ids = itertools.count(1)
        self._pending: dict[int, _Pending] = {}
        self._subs: dict[str, Subscription] = {}
        self._waiters: list[asyncio.Future[dict[str, Any]]] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self._last_frame = 0.0
        self._silent = False

    def on(self, event: Event, listener: Listener) -> Callable[[], None]:
        """Call ``listener`` on ``event`` (sync, or async: run as a task); returns a function
        that removes it."""
        return self._add(event, listener)

    # -- public API ------------------------------------------------------------------------------
    async def connect(self) -> dict[str, Any]:
        """Start (or keep) connecting; return the welcome frame once connected. Raises
        :class:`ClientClosed` if the client stops for good first. It keeps retrying while the
        gateway is unreachable: bound the wait with ``asyncio.timeout`` if needed (then
        :meth:`close` stops the retries)."""
        if self.state == "connected" and self.welcome is not None:
            return self.welcome
        waiter: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        if not self._wanted:
            self._wanted = True
            self._runner = asyncio.create_task(self._run(), name=f"pygw-client {self.url}")
        try:
            return await asyncio.shield(waiter)
        finally:
            with contextlib.suppress(ValueError):
                self._waiters.remove(waiter)

    async def close(self) -> None:
        """Close for good (1000); pending requests fail and iterations end. :meth:`connect`
        starts again and resubscribes."""
        was_running = self._wanted
        self._wanted = False
        runner, self._runner = self._runner, None
        ws = self._ws
        if ws is not None:
            with contextlib.suppress(Exception):
                await ws.close(CLOSE_NORMAL, "client closed")
        if runner is not None:
            runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await runner
        self._ws = None
        self._stop(CLOSE_NORMAL, "client closed", by_server=False)
        if was_running:
            self._emit("disconnected", Disconnect(CLOSE_NORMAL, "client closed", False))

    async def request(
        self,
        frame: dict[str, Any],
        *,
        timeout: float | None = None,  # noqa: ASYNC109 - a request's own deadline (RequestTimeout)
    ) -> dict[str, Any]:
        """Send ``frame`` with a fresh ``id`` and return the reply carrying it. Raises
        :class:`PygwError` for an error frame, :class:`RequestTimeout` after ``timeout``
        seconds (default ``request_timeout``), :class:`ConnectionLost` if the socket closed
        before the reply. While (re)connecting the frame waits (within its timeout)."""
        if not self._wanted:
            raise ClientClosed("not connected: call connect() first", 0, "")
        limit = self.request_timeout if timeout is None else timeout
        id_ = next(self._ids)
        entry = _Pending({**frame, "id": id_}, asyncio.get_running_loop().create_future())
        self._pending[id_] = entry
        try:
            async with asyncio.timeout(limit):
                if self.state == "connected":
                    await self._send_entry(entry)
                reply = await entry.future
        except TimeoutError:
            raise RequestTimeout(f"no reply to {frame.get('type')!r} within {limit} s") from None
        finally:
            self._pending.pop(id_, None)
        if reply.get("type") == "error":
            raise _error(reply)
        return reply

    async def publish(self, channel: str, data: Any) -> int:
        """Publish ``data`` to ``channel``; returns the publication's offset."""
        reply = await self.request({"type": "publish", "channel": channel, "data": data})
        return int(reply["offset"])

    async def subscribe(
        self,
        channel: str,
        *,
        on_message: Listener | None = None,
        since: StreamPosition | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 - the subscribe request's deadline
    ) -> Subscription:
        """Subscribe to ``channel`` and wait until the server confirms it. Messages go to
        ``on_message`` if given, else to the subscription's ``async for``. ``since`` resumes
        from a saved position. Raises :class:`PygwError` if the server refuses."""
        if not self._wanted:
            raise ClientClosed("not connected: call connect() first", 0, "")
        if channel in self._subs:
            raise ValueError(f"already subscribed to {channel!r}")
        sub = Subscription(self, channel, since=since, queue=on_message is None)
        if on_message is not None:
            sub.on("message", on_message)
        self._subs[channel] = sub
        if self.state == "connected":
            self._send_subscribe(sub)
        limit = self.request_timeout if timeout is None else timeout
        try:
            await asyncio.wait_for(asyncio.shield(sub.ready), limit)
        except TimeoutError:
            self._forget(sub)
            raise RequestTimeout(f"no answer to subscribing {channel!r} within {limit} s") from None
        return sub

    def subscription(self, channel: str) -> Subscription | None:
        """The subscription of ``channel``, if any."""
        return self._subs.get(channel)

    async def __aenter__(self) -> Client:
        try:
            await self.connect()
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- the connection loop ---------------------------------------------------------------------
    async def _run(self) -> None:
        attempt = 0
        while self._wanted:
            self.state = "connecting"
            self._emit("connecting", {"attempt": attempt})
            if self.token is None and self.token_source is not None:
                await self._fetch_token()
            code, reason, connected = await self._connection()
            if connected:
                attempt = 0
            self._lost()
            reconnect = self._wanted and code not in (CLOSE_NORMAL, 0)
            if reconnect and code == CLOSE_POLICY and reason not in TRANSIENT_POLICY_REASONS:
                reconnect = await self._refresh_token()
            if not self._wanted:
                return  # close() was called (and tells the listeners)
            self._emit("disconnected", Disconnect(code, reason, reconnect))
            if not reconnect:
                self._wanted = False
                self._runner = None
                self._stop(code, reason, by_server=True)
                return
            await asyncio.sleep(
                backoff_delay(attempt, self.min_reconnect_delay, self.max_reconnect_delay)
            )
            attempt += 1

    async def _connection(self) -> tuple[int, str, bool]:
        """One connection, until it closes: (close code, reason, whether it got connected)."""
        url = connect_url(self.url, self.token, self.session_id)
        try:
            async with asyncio.timeout(self.connect_timeout):
                ws = await ws_connect(
                    url,
                    ping_interval=None,  # the server's JSON pings and the silence watch suffice
                    max_size=self.max_message_bytes,
                    open_timeout=None,
                    close_timeout=2,
                )
                self._ws = ws
                welcome = orjson.loads(await ws.recv())
        except InvalidURI as exc:
            self._emit("error", exc)
            return 0, str(exc), False
        except ConnectionClosed as exc:
            rcvd = exc.rcvd
            return (rcvd.code, rcvd.reason, False) if rcvd else (CLOSE_ABNORMAL, str(exc), False)
        except TimeoutError:
            await self._abandon()
            return CLOSE_ABNORMAL, "connect timeout", False
        except (OSError, InvalidHandshake, orjson.JSONDecodeError) as exc:
            await self._abandon()
            return CLOSE_ABNORMAL, f"connection failed: {exc}", False
        self._on_connected(welcome)
        watch = asyncio.create_task(self._watch_silence(ws, welcome.get("ping_interval")))
        try:
            async for raw in ws:
                await self._on_raw(ws, raw)
        except ConnectionClosed:
            pass
        finally:
            watch.cancel()
        if self._silent:
            return CLOSE_ABNORMAL, "server silent", True
        return ws.close_code or CLOSE_ABNORMAL, ws.close_reason or "", True

    async def _abandon(self) -> None:
        ws, self._ws = self._ws, None
        if ws is not None:
            ws.transport.abort()

    async def _watch_silence(self, ws: ClientConnection, ping_interval: Any) -> None:
        """A live connection hears from the server at least every ping interval; one silent
        for 1.5 intervals (+ ``silence_grace``) is dead: abort it (the loop reconnects)."""
        if not isinstance(ping_interval, int | float) or ping_interval <= 0:
            return
        loop = asyncio.get_running_loop()
        limit = ping_interval * 1.5 + self.silence_grace
        while True:
            silent = loop.time() - self._last_frame
            if silent >= limit:
                self._silent = True
                ws.transport.abort()
                return
            await asyncio.sleep(limit - silent)

    def _on_connected(self, welcome: dict[str, Any]) -> None:
        self.state = "connected"
        self.welcome = welcome
        self._silent = False
        self._last_frame = asyncio.get_running_loop().time()
        if welcome.get("session_id"):
            self.session_id = welcome["session_id"]
        for sub in self._subs.values():
            self._send_subscribe(sub)
        for entry in list(self._pending.values()):
            if not entry.sent:
                self._spawn(self._send_entry(entry))
        self._emit("connected", welcome)
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(welcome)

    async def _on_raw(self, ws: ClientConnection, raw: str | bytes) -> None:
        self._last_frame = asyncio.get_running_loop().time()
        try:
            frame = orjson.loads(raw)
        except orjson.JSONDecodeError:
            self._emit("error", ClientError("a frame that is not JSON"))
            return
        if not isinstance(frame, dict):
            return
        self._emit("frame", frame)
        kind = frame.get("type")
        if kind == "ping":
            with contextlib.suppress(ConnectionClosed):
                await ws.send('{"type":"pong"}')
            return
        if kind == "message":
            channel = str(frame.get("channel", ""))
            sub = self._subs.get(channel)
            if sub is not None:
                sub._on_frame(frame)
            else:
                self._emit("message", Message(channel, frame.get("data"), frame.get("offset")))
            return
        entry = self._pending.get(frame["id"]) if isinstance(frame.get("id"), int) else None
        if entry is not None:
            if not entry.future.done():
                entry.future.set_result(frame)
        elif kind == "error":
            self._emit("error", _error(frame))

    def _lost(self) -> None:
        """The connection ended: requests already sent can no longer get their reply."""
        self._ws = None
        self.state = "disconnected"
        self.welcome = None
        self._fail_pending(ConnectionLost("connection closed before the reply"), everything=False)
        for sub in self._subs.values():
            if sub.state == "subscribing":
                sub._buffer = []

    async def _fetch_token(self) -> None:
        assert self.token_source is not None
        try:
            result = self.token_source()
            if inspect.isawaitable(result):
                result = await result
        except Exception as exc:
            self._emit("error", exc)
            return
        self.token = result or None

    async def _refresh_token(self) -> bool:
        """After a 1008: ask the token source for a new token; True if it gave one that differs."""
        if self.token_source is None:
            return False
        used = self.token
        await self._fetch_token()
        return self.token is not None and self.token != used

    def _stop(self, code: int, reason: str, *, by_server: bool) -> None:
        """Stopped for good: fail what waits; end iterations (with ClientClosed if by_server)."""
        self.state = "disconnected"
        error = ClientClosed(f"disconnected ({code} {reason})", code, reason)
        self._fail_pending(error, everything=True)
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_exception(error)
        for sub in self._subs.values():
            if sub._queue is not None:
                sub._queue.put_nowait(_End(error if by_server else None))

    # -- sending ---------------------------------------------------------------------------------
    async def _send_entry(self, entry: _Pending) -> None:
        entry.sent = True
        ws = self._ws
        if ws is None:
            return  # lost meanwhile: _lost() fails it
        with contextlib.suppress(ConnectionClosed):  # the loop sees it and fails the request
            await ws.send(orjson.dumps(entry.message).decode())

    def _send_subscribe(self, sub: Subscription) -> None:
        self._spawn(self._subscribe(sub, sub._subscribe_frame()))

    async def _subscribe(self, sub: Subscription, frame: dict[str, Any]) -> None:
        try:
            reply = await self.request(frame)
        except PygwError as exc:
            if self._subs.get(sub.channel) is sub:
                sub._on_refused(exc)
            return
        except RequestTimeout as exc:
            if self._subs.get(sub.channel) is sub:
                sub._emit("error", exc)
            return
        except ClientError:
            return  # connection lost or closed: resubscribed at the next connection, if any
        if self._subs.get(sub.channel) is sub:
            sub._on_subscribed(reply)

    def _forget(self, sub: Subscription) -> None:
        if self._subs.get(sub.channel) is sub:
            del self._subs[sub.channel]

    def _fail_pending(self, error: ClientError, *, everything: bool) -> None:
        for entry in list(self._pending.values()):
            if (everything or entry.sent) and not entry.future.done():
                entry.future.set_exception(error)

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
