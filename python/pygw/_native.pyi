"""Rust core of pygw: JWT, client-frame codec, channel permissions, rate limiting, history,
and the uWebSockets transport binding.

Everything here is implemented in Rust (``native/``); this stub is written by hand.
"""

from collections.abc import Callable, Iterable
from typing import Any, Final, Self, final

__all__ = [
    "FRAME_ID_MAX_BYTES",
    "JSON_MAX_DEPTH",
    "ChannelPolicy",
    "Claims",
    "ClientFrame",
    "ExpiredToken",
    "FrameError",
    "HTTPRequest",
    "HistoryBuffers",
    "InvalidToken",
    "JSONLimitError",
    "RateLimiter",
    "RevokedToken",
    "TokenCodec",
    "TokenError",
    "UWSApp",
    "UpgradeRequest",
    "__version__",
    "check_json",
    "decode_frame",
    "encode_message",
    "ws_buffered_amount",
    "ws_close",
    "ws_end",
    "ws_remote_address",
    "ws_send",
    "ws_subscribe",
    "ws_unsubscribe",
]

__version__: Final[str]

# --------------------------------------------------------------------------- JWT

class TokenError(Exception):
    """A token was refused (base class)."""

class InvalidToken(TokenError):
    """Malformed, badly signed, wrong algorithm, bad claims, not yet valid (``nbf``)
    or of the wrong token type."""

class ExpiredToken(TokenError):
    """The token's ``exp`` (plus leeway) has passed."""

class RevokedToken(TokenError):
    """The token's ``jti`` is on the revocation list."""

@final
class Claims:
    """The claims of a verified token (immutable).

    Cached verifications return the same ``Claims`` object for the same token.
    """

    @property
    def sub(self) -> str: ...
    @property
    def user_id(self) -> str:
        """The ``user_id`` claim, or ``sub`` when absent."""
    @property
    def role(self) -> str:
        """The ``role`` claim, or ``"user"``."""
    @property
    def exp(self) -> int:
        """Expiry, UNIX seconds (fractional values are floored)."""
    @property
    def iat(self) -> int | None: ...
    @property
    def jti(self) -> str | None: ...
    @property
    def sid(self) -> str | None: ...
    @property
    def typ(self) -> str:
        """The ``typ`` claim, or ``"access"``."""
    @property
    def fam(self) -> str | None:
        """Refresh-token family."""
    @property
    def gen(self) -> int:
        """The ``gen`` claim (the user's token generation when the token was issued), or 0."""
    def to_dict(self) -> dict[str, object]:
        """A new dict of every claim in the payload, unknown ones included."""
    def __repr__(self) -> str: ...

@final
class TokenCodec:
    """Signs and verifies JWTs (JWS compact form) for one algorithm and key.

    Algorithms: ``HS256``/``HS384``/``HS512`` (``secret``), ``RS256``/``RS384``/``RS512``
    (RSA >= 2048 bits), ``ES256``/``ES384`` and ``EdDSA`` (Ed25519) with PEM keys. Private
    keys: PKCS#8 (``PRIVATE KEY``), PKCS#1 (``RSA PRIVATE KEY``) or SEC1 (``EC PRIVATE KEY``),
    unencrypted; public keys: SubjectPublicKeyInfo (``PUBLIC KEY``) or ``RSA PUBLIC KEY``.
    Without ``public_key_pem`` the public key is derived from the private key; without
    ``private_key_pem`` the codec can only verify.

    Verified tokens are cached (key: the token string) up to ``cache_size`` entries,
    evicting the oldest insertion first (FIFO); ``cache_size=0`` disables the cache.
    A cache hit re-checks expiry, ``nbf``, token type and revocation. Failed
    verifications are never cached. Thread-safe; the GIL is released during
    public-key signing and verification.

    Raises ValueError for an unsupported algorithm, a missing, unusable or
    mismatched key, or a negative leeway.
    """

    def __new__(
        cls,
        algorithm: str,
        *,
        secret: bytes | None = None,
        private_key_pem: bytes | None = None,
        public_key_pem: bytes | None = None,
        cache_size: int = 100_000,
        leeway: int = 0,
    ) -> Self: ...
    def sign(self, payload_json: bytes) -> str:
        """Sign a JSON object. The header is ``{"alg":<alg>,"typ":"JWT"}``; the payload
        bytes are embedded verbatim. ValueError if the codec has no private key or the
        payload is not a JSON object."""
    def verify(
        self, token: str, now: int | None = None, typ: str = "access", cache: bool = True
    ) -> Claims:
        """Verify ``token`` at ``now`` (UNIX seconds, default: the current time).

        A cached verify is reused; with ``cache=False`` a token not cached yet is not added
        (a WebSocket verifies its token once: an entry per idle socket would cost ~1 KiB).

        Checks the structure, that the header ``alg`` equals the codec's algorithm
        (``none`` is never accepted), the signature, that the payload is a JSON object
        with a string ``sub`` and a numeric ``exp``, ``nbf`` if present (both with
        leeway), that the token's ``typ`` claim (default ``"access"``) equals ``typ``,
        that its ``jti`` is not revoked and, for access tokens, that its ``gen`` is not
        below its user's floor (:meth:`revoke_user`).

        Raises ExpiredToken, RevokedToken or InvalidToken (all TokenError).
        """
    def revoke(self, jti: str, exp: int) -> None:
        """Revoke ``jti``; the entry may be pruned once ``exp`` (plus leeway) has passed."""
    def is_revoked(self, jti: str) -> bool: ...
    def revoke_user(self, user: str, gen: int, until: int) -> None:
        """Revoke every access token of ``user`` (by ``sub``) whose ``gen`` claim is below
        ``gen``, cached ones included; the entry may be pruned once ``until`` (plus leeway)
        has passed. Floors only rise (a lower ``gen`` arriving later changes nothing)."""
    def user_floor(self, user: str) -> int | None:
        """``user``'s token generation floor, or None."""
    def prune(self, now: int | None = None) -> int:
        """Drop expired revocations, floors and cache entries; return how many."""
    def clear_cache(self) -> None: ...
    @property
    def cache_len(self) -> int: ...
    @property
    def revoked_len(self) -> int: ...
    @property
    def floors_len(self) -> int: ...
    @property
    def algorithm(self) -> str: ...
    def __repr__(self) -> str: ...

# ----------------------------------------------------------------- client frames

class FrameError(ValueError):
    """A client frame was refused. ``str(err) == err.message``.

    ``decode_frame`` sets the attributes below on the instances it raises.
    """

    code: int
    """Protocol error code (400)."""
    message: str
    """``"Invalid JSON"``, ``"Missing message type"``, ``"Invalid field: <name>"`` or what
    :func:`check_json` refused (e.g. ``"JSON nested deeper than 32 levels at byte 40"``)."""
    id: bytes | None
    """Raw JSON of the frame's ``id`` if one could be read (and is a valid id), to echo in
    the reply."""

@final
class ClientFrame:
    """A decoded client frame. Raw members are the exact bytes of the input."""

    @property
    def type(self) -> str: ...
    @property
    def id(self) -> bytes | None:
        """Raw JSON text of ``id`` as sent, e.g. ``b'7'`` or ``b'"abc"'``."""
    @property
    def channel(self) -> str | None: ...
    @property
    def key(self) -> str | None: ...
    @property
    def data(self) -> bytes | None:
        """Raw JSON text of ``data`` as sent (``b'null'`` for an explicit null)."""
    @property
    def since_epoch(self) -> str | None:
        """``since.epoch`` of a recovery request."""
    @property
    def since_offset(self) -> int | None:
        """``since.offset`` of a recovery request."""
    def json(self) -> object:
        """The whole frame parsed like ``json.loads`` (integers outside the 64-bit range
        become floats)."""
    def __repr__(self) -> str: ...

def decode_frame(payload: bytes | str) -> ClientFrame:
    """Decode a client frame (a JSON object; ``bytes`` must be UTF-8).

    The whole frame is checked like :func:`check_json` with ``max_depth=JSON_MAX_DEPTH``
    (the frame object is level 1) in the same pass that finds its members.

    Raises FrameError(400) with message ``"Invalid JSON"`` (not JSON, not an object, or
    a member given twice), the guard's message (nesting, a number out of range, an unpaired
    surrogate escape: see :class:`JSONLimitError`), ``"Missing message type"`` (``type``
    absent or not a non-empty string) or ``"Invalid field: id|channel|key|since"`` (``id``
    not a string, number, boolean or null of at most ``FRAME_ID_MAX_BYTES`` bytes,
    ``channel``/``key`` not a string, ``since`` not ``{"epoch": str, "offset": int >= 0}``).
    TypeError for other types.
    """

JSON_MAX_DEPTH: Final[int]
"""32: the nesting depth allowed in client frames and, by default, by :func:`check_json`."""

FRAME_ID_MAX_BYTES: Final[int]
"""256: the longest ``id`` (raw JSON text) a client frame may carry."""

class JSONLimitError(ValueError):
    """A JSON text was refused by :func:`check_json`. ``str(err) == err.message``."""

    kind: str
    """``"size"``, ``"depth"``, ``"integer"``, ``"number"``, ``"string"`` or ``"syntax"``."""
    status: int
    """The HTTP status for it: 413 for ``size``, else 422."""
    position: int | None
    """Byte offset where the text was refused (None for ``size``)."""
    message: str
    """E.g. ``"JSON larger than 65536 bytes"``, ``"JSON nested deeper than 32 levels at byte
    40"``, ``"integer outside the 64-bit range [-2**63, 2**64-1] at byte 9"``, ``"number too
    large for a double at byte 9"``, ``"unpaired UTF-16 surrogate escape at byte 9"``,
    ``"invalid JSON at byte 3"``."""

def check_json(text: bytes | str, *, max_bytes: int, max_depth: int = 32) -> None:
    """Check a JSON text in one pass, without building it: at most ``max_bytes`` bytes,
    arrays/objects nested at most ``max_depth`` levels (the outermost container is level 1;
    0 allows a scalar only; at most 1024), every integer in ``[-2**63, 2**64-1]`` (what orjson
    encodes), every other number finite as a double, every ``\\u`` surrogate escape paired,
    and valid JSON (``bytes`` must be UTF-8). Raises :class:`JSONLimitError`; ValueError if
    ``max_depth`` is over 1024; TypeError for other types."""

def encode_message(channel: str, data_json: bytes, offset: int | None = None) -> bytes:
    """``{"type":"message","channel":<channel>,"data":<data_json>,"offset":<n>}``, compact;
    ``data_json`` is embedded verbatim (trusted to be valid JSON); no ``offset`` member
    when ``offset`` is None."""

# ---------------------------------------------------------- channel permissions

@final
class ChannelPolicy:
    """Who may subscribe or publish to which channel.

    ``namespaces_json`` is a JSON list of ``{"name": str, "subscribe": [roles] | "*",
    "publish": [roles] | "*", "history_size": int = 0, "history_ttl": float = 0,
    "presence": bool = False}``. An empty role list allows nobody; an omitted
    ``subscribe``/``publish`` means ``"*"``, except in the ``admin`` namespace where it
    means ``["admin"]`` (an explicit ``null`` is an error, not a default). Unknown keys,
    duplicate names and bad values raise ValueError.

    Channel names: 1..255 bytes of ``[A-Za-z0-9_\\-.:@=/+]``, not starting with ``:``.
    The namespace is the text before the first ``:`` (``""`` if there is none).
    Built-ins: ``user:<id>`` may be subscribed only by user ``<id>`` and never published
    to by clients (configuration can only restrict it further); ``admin`` is admin-only
    unless configured. Other unconfigured namespaces are open to every role if
    ``allow_unknown``, else refused with 404.
    """

    def __new__(cls, namespaces_json: bytes = b"[]", allow_unknown: bool = True) -> Self: ...
    def check(self, action: str, channel: str, user_id: str, role: str) -> int:
        """0 if ``action`` (``"subscribe"`` or ``"publish"``) is allowed, else 400 (invalid
        channel name), 403 (permission denied) or 404 (unknown namespace). ValueError for
        another action."""
    def options(self, channel: str) -> tuple[int, float, bool]:
        """``(history_size, history_ttl, presence)`` of the channel's namespace;
        ``(0, 0.0, False)`` if it is not configured. The name is not validated."""
    def namespace(self, channel: str) -> str: ...

# -------------------------------------------------------------- rate limiting

@final
class RateLimiter:
    """GCRA rate limiter: ``rate`` events per second sustained, ``burst`` at once, per key.

    Keys are ``str`` or ``int`` (64-bit; ``"1"`` and ``1`` are different keys). At most
    ``max_keys`` keys are tracked: when full, keys back in their fresh state are pruned;
    if that frees too little, the keys closest to fresh (earliest theoretical arrival
    time, i.e. the least limited) are evicted until 1/16 of the capacity is free.

    ``now`` is in seconds and defaults to ``time.monotonic()``'s clock. ValueError if
    ``rate <= 0``, ``burst < 1`` or ``max_keys < 1``.
    """

    def __new__(cls, rate: float, burst: int, max_keys: int = 1_000_000) -> Self: ...
    def check(self, key: str | int, now: float | None = None, cost: int = 1) -> float:
        """0.0 if allowed (``cost`` is consumed); else the seconds to wait until it would
        be allowed (nothing consumed), ``math.inf`` if ``cost > burst``. TypeError for
        other key types; OverflowError for a negative cost."""
    def remove(self, key: str | int) -> None: ...
    def reset(self) -> None:
        """Forget every key."""
    def prune(self, now: float | None = None) -> int:
        """Drop keys whose state equals a fresh key's; return how many."""
    def __len__(self) -> int: ...

# ------------------------------------------------------------------- history

@final
class HistoryBuffers:
    """Per-channel publication history (the memory backend's streams).

    Each channel's stream numbers publications 1, 2, 3, ... under a random epoch (16 hex
    digits) chosen when the stream is created. Streams live until ``remove()``;
    ``prune()`` only drops expired publications, so epochs stay stable. ``now`` is in
    seconds and defaults to ``time.time()``.
    """

    def __new__(cls) -> Self: ...
    def publish(
        self, channel: str, data_json: bytes, size: int, ttl: float, now: float | None = None
    ) -> tuple[int, str, bytes]:
        """Append a publication; return ``(offset, epoch, envelope)`` where envelope is
        ``encode_message(channel, data_json, offset)``. Keeps the newest ``size``
        publications (0: none, offsets still advance) younger than ``ttl`` seconds
        (0: no expiry; the latest ttl applies to the whole stream). ValueError for a
        negative or non-finite ttl."""
    def recover(
        self, channel: str, epoch: str, offset: int, now: float | None = None
    ) -> tuple[list[bytes], bool, str, int]:
        """``(envelopes, recovered, epoch, top)``: the retained envelopes after ``offset``
        in order, and whether they are everything the client missed (same epoch and no
        gap; a client at the top gets ``([], True, ...)``). With another epoch, or an
        offset beyond the top, the list is empty and ``recovered`` False. Creates the
        stream (top 0) for an unknown channel."""
    def top(self, channel: str) -> tuple[str, int]:
        """``(epoch, top offset)``, creating the stream if needed."""
    def history(
        self, channel: str, since: int = 0, limit: int = 100, now: float | None = None
    ) -> list[tuple[int, bytes]]:
        """Up to ``limit`` retained ``(offset, data_json)`` with offset > ``since``, oldest
        first. Does not create a stream."""
    def remove(self, channel: str) -> None:
        """Forget the stream; a later publish starts a new epoch at offset 1."""
    def prune(self, now: float | None = None) -> int:
        """Drop expired publications in every stream; return how many."""
    def __len__(self) -> int:
        """Number of streams."""

# --------------------------------------------------------------- uWS transport

@final
class UWSApp:
    """A uWebSockets app (socketify's prebuilt ``libsocketify``, its C API called directly)
    on its own libuv loop, which Python drives: call :meth:`run_nowait` when
    :meth:`backend_fd` is readable, when :meth:`backend_timeout` ms have passed, or after
    writing to sockets from outside a callback (``publish``, ``ws_end``, ``accept``).

    Callbacks registered with uWS are native: each HTTP request, upgrade and WebSocket event
    calls Python once. They run inside ``run_nowait`` (or inside the call that triggered
    them, e.g. ``ws_end`` runs the close handler) with the GIL held. An exception raised by
    a Python handler is passed to ``report(what, exc)``.

    ``library_path`` is socketify's library (opened with ``RTLD_NOLOAD`` first, so an
    already loaded copy is shared); ``libuv`` the libuv it links. One app per process at a
    time: creating one makes it the target of module-level callbacks. OSError if the
    library cannot be loaded, RuntimeError if uWS cannot be set up.
    """

    def __new__(
        cls,
        library_path: str,
        report: Callable[[str, BaseException], object],
        libuv: str = "libuv.so.1",
    ) -> Self: ...
    def http(
        self,
        on_request: Callable[[HTTPRequest], object],
        on_error: Callable[[HTTPRequest, int, str], object],
        header_names: Iterable[str],
        all_header_prefixes: Iterable[str],
        max_body_bytes: int,
        batch: bool = True,
    ) -> None:
        """Register the catch-all route ``/*``. Each request is copied out of uWS (method
        upper-cased, path and query string split at the first ``?``, the ``header_names``
        present — or every header, repeated ones joined with ``", "``, for paths starting
        with one of ``all_header_prefixes`` — and the remote address), then:

        - no body (no Content-Length or ``0``, no Transfer-Encoding): ``on_request(request)``;
        - a Content-Length that is not a non-negative integer:
          ``on_error(request, 400, "Invalid Content-Length")``;
        - a Content-Length over ``max_body_bytes``, or a body growing past it while it
          streams in: ``on_error(request, 413, "Request body too large")``;
        - else the body is received natively and ``on_request(request)`` gets it in
          ``request.body``.

        ``on_error`` must answer with ``close=True``. Whoever gets the request answers with
        :meth:`HTTPRequest.respond`, now or later; if ``on_request``/``on_error`` raise and
        nobody answered, a plain JSON error is sent. RuntimeError if already registered.

        With ``batch`` (the default), complete requests are not handed over inside the uWS
        callback but collected during the libuv iteration; :meth:`run_nowait` then calls
        ``on_request`` for each, one after the other, and writes the answers given during
        that (``respond`` defers them) back to back at the end. Requests whose client asked
        to close (``Connection: close``, HTTP/1.0) are handed over inside the callback, where
        uWS closes after the answer. (An HTTP/1.1 client pipelining a request behind one not
        answered yet gets its connection closed by uWS, as with any answer given later.)"""
    def ws(
        self,
        path: str,
        *,
        upgrade: Callable[[UpgradeRequest], object],
        open: Callable[[Any], object],
        message: Callable[[Any, bytes, int], object],
        close: Callable[[Any, int, bytes], object],
        pong: Callable[[Any], object],
        drain: Callable[[Any], object],
        query_names: Iterable[str],
        header_names: Iterable[str],
        max_payload_length: int,
        idle_timeout: int,
        max_backpressure: int,
        close_on_backpressure_limit: bool,
        send_pings_automatically: bool,
        compression: int = 0,
    ) -> None:
        """Register the WebSocket route. ``compression`` is a ``uws_compress_options_t``: 0
        (none), or a compressor (1 shared, or a dedicated window/memory pair) together with a
        decompressor (``1 << 8`` shared, or a dedicated window); ValueError otherwise. With
        it, permessage-deflate is negotiated with clients that offer it, and :meth:`publish`
        and :func:`ws_send` compress for sockets that accepted it. ``upgrade(request)`` gets an
        :class:`UpgradeRequest` (``query_names`` values URL-decoded as uWS's ``getQuery``
        does, ``header_names`` headers, empty values left out) and answers it with
        ``accept(socket)`` or ``reject(...)``, now or later. Then ``open(socket)``,
        ``message(socket, data, opcode)``, ``pong(socket)``, ``drain(socket)`` and, once,
        ``close(socket, code, reason)`` get the accepted object, whose ``ws`` attribute is
        set to the native WebSocket (an int) before ``open`` and to None before ``close``.
        RuntimeError if already registered."""
    def listen(self, host: str, port: int, backlog: int = 0) -> int:
        """Bind (``SO_REUSEPORT``; port 0 picks one) and return the port. ``backlog`` > 0
        replaces uSockets' accept backlog (512; the kernel caps it at ``somaxconn``).
        OSError if it cannot listen."""
    def close_listener(self) -> bool:
        """Stop accepting connections (open ones stay); False if not listening."""
    def publish(self, topic: bytes, message: bytes, opcode: int = 1) -> bool:
        """Send ``message`` to every subscriber of ``topic`` (compressed for subscribers that
        negotiated permessage-deflate). From outside the loop, uWS queues it per subscriber
        and writes on the next :meth:`run_nowait`."""
    def num_subscribers(self, topic: bytes) -> int: ...
    def run_nowait(self) -> int:
        """One non-blocking libuv iteration (``in_uv`` is True meanwhile), then the HTTP
        batch (see :meth:`http`); returns :meth:`backend_timeout` after it."""
    def backend_fd(self) -> int:
        """libuv's backend (epoll) fd, readable when the loop has work."""
    def backend_timeout(self) -> int:
        """Milliseconds until libuv's next timer: -1 none, 0 run again now."""
    @property
    def in_uv(self) -> bool:
        """True while libuv runs: inside uWS callbacks, whose writes uWS corks."""
    @property
    def pending_requests(self) -> int:
        """HTTP requests not yet answered nor aborted that uWS may report about (body
        being read, or handler pending)."""
    @property
    def pending_upgrades(self) -> int:
        """Upgrades waiting for ``accept``/``reject``."""
    @property
    def library_path(self) -> str: ...

@final
class HTTPRequest:
    """One HTTP exchange, copied out of uWS.

    ``HTTPRequest(method, path, query_string, headers, client_ip)`` builds a detached request
    (tests, benchmarks): ``body`` is ``b""`` and :meth:`respond` does nothing.
    """

    method: str
    path: str
    query_string: str
    headers: dict[str, str]
    client_ip: str
    body: bytes
    params: dict[str, str]
    """Path parameters (set by the router); a new empty dict until set."""
    state: dict[str, Any]
    """Per-request scratch space; a new empty dict until set."""

    def __new__(
        cls,
        method: str,
        path: str,
        query_string: str,
        headers: dict[str, str],
        client_ip: str,
    ) -> Self: ...
    @property
    def aborted(self) -> bool:
        """The client went away before the answer (``respond`` then does nothing)."""
    @property
    def responded(self) -> bool:
        """:meth:`respond` wrote the answer."""
    def respond(
        self,
        status: int,
        body: bytes,
        content_type: bytes | None = None,
        headers: Iterable[tuple[str, str]] | None = None,
        close: bool = False,
    ) -> bool:
        """Write the status line (any code: unknown ones as ``"<code> Unknown"``), the
        headers (Latin-1; ValueError otherwise, before anything is written), Content-Type
        (default ``application/json``; ``b""`` for none) and the body, corked (inside the
        HTTP batch: when the batch ends). ``close`` adds ``Connection: close`` and closes
        after. Returns False, doing nothing, once answered, after an abort, or for a
        detached request."""
    def stream(
        self,
        status: int,
        first: bytes,
        content_type: bytes | None = None,
        headers: Iterable[tuple[str, str]] | None = None,
        on_close: Callable[[], object] | None = None,
    ) -> bool:
        """Start a streamed answer: status, headers, Content-Type and ``first`` (not empty:
        ValueError) as the first chunk of a chunked body, corked. The request is then the
        stream (:meth:`write`, :meth:`end`, :meth:`buffered_amount`) and ``on_close()`` is
        called once if the client goes away before :meth:`end`. False, doing nothing, once
        answered, after an abort, or for a detached request."""
    def write(self, data: bytes) -> int:
        """One chunk of a streamed answer, corked (it leaves at once). 1: written; 0: part of
        it waits in uWS's buffer (backpressure); 2: not streaming, or the client is gone."""
    def end(self) -> bool:
        """End a streamed answer (the last chunk); the connection stays open for further
        requests. ``on_close`` is not called. False if not streaming or gone."""
    def buffered_amount(self) -> int:
        """Bytes of a streamed answer waiting in uWS's buffer (0 when not streaming)."""
    def __repr__(self) -> str: ...

@final
class UpgradeRequest:
    """A WebSocket upgrade request, copied out of uWS. Answer it once with :meth:`accept` or
    :meth:`reject`, in the upgrade callback or later from asyncio (then ask for a loop
    iteration); after ``aborted`` both do nothing.

    The keyword constructor builds a detached request (tests) that cannot be answered.
    """

    @property
    def path(self) -> str: ...
    @property
    def query(self) -> dict[str, str]: ...
    @property
    def headers(self) -> dict[str, str]: ...
    @property
    def key(self) -> bytes:
        """Sec-WebSocket-Key."""
    @property
    def protocol(self) -> bytes:
        """Sec-WebSocket-Protocol."""
    @property
    def extensions(self) -> bytes:
        """Sec-WebSocket-Extensions."""
    @property
    def client_ip(self) -> str: ...
    @property
    def aborted(self) -> bool: ...
    @property
    def answered(self) -> bool: ...
    def __new__(
        cls,
        *,
        path: str,
        query: dict[str, str],
        headers: dict[str, str],
        key: bytes,
        protocol: bytes,
        extensions: bytes,
        client_ip: str,
    ) -> Self: ...
    def accept(self, socket: Any) -> bool:
        """Upgrade; ``socket`` becomes the connection's object: uWS keeps a strong reference
        to it until after ``close``, its ``ws`` is set and ``open(socket)`` runs before this
        returns. False if it cannot (answered, aborted, detached)."""
    def reject(
        self,
        status: int,
        body: bytes,
        content_type: bytes | None = None,
        headers: Iterable[tuple[str, str]] | None = None,
        close: bool = False,
    ) -> bool:
        """Refuse with an HTTP response (as :meth:`HTTPRequest.respond`)."""
    def __repr__(self) -> str: ...

def ws_send(ws: int, data: bytes, opcode: int = 1) -> int:
    """Send one frame: 0 backpressure (queued), 1 success, 2 dropped. Inside callbacks uWS
    corks it; outside, it is corked here and leaves at once. Compressed when the route has
    compression and the socket negotiated it. ``ws`` must be open."""

def ws_end(ws: int, code: int, reason: bytes = b"") -> None:
    """Close with a close frame; the close handler runs before this returns."""

def ws_close(ws: int) -> None:
    """Terminate the connection without a close handshake."""

def ws_subscribe(ws: int, topic: bytes) -> bool: ...
def ws_unsubscribe(ws: int, topic: bytes) -> bool: ...
def stream_write_many(streams: Iterable[Any], data: bytes) -> int:
    """Write ``data`` to every stream (streaming :class:`HTTPRequest`\\ s natively, anything
    else through its ``write`` method); returns how many took it (result not 2)."""

def ws_buffered_amount(ws: int) -> int:
    """Bytes queued in user space for the socket."""

def ws_remote_address(ws: int) -> str: ...
