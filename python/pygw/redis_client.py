"""One way to open a Redis client and one meaning of "Redis is unreachable", shared by the
storage and the broker."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import MasterDownError, ReadOnlyError
from redis.exceptions import TimeoutError as RedisTimeoutError

from pygw.errors import BackendUnavailable

UNREACHABLE: tuple[type[BaseException], ...] = (
    RedisConnectionError,  # includes BusyLoadingError (LOADING) and refused/reset sockets
    RedisTimeoutError,
    ReadOnlyError,  # a replica after failover: writes impossible until the master returns
    MasterDownError,
    OSError,
    TimeoutError,
)


def connect(
    url: str,
    *,
    socket_timeout: float = 2.0,
    client_name: str | None = None,
    decode_responses: bool = False,
) -> Redis:
    """A pooled asyncio client (hiredis parser when installed) that reconnects by itself: a
    command failing on a dead pooled connection (e.g. after a Redis restart) is retried once on a
    new one, and while Redis is down calls fail fast."""
    return Redis.from_url(
        url,
        decode_responses=decode_responses,
        socket_timeout=socket_timeout,
        socket_connect_timeout=socket_timeout,
        retry=Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
        client_name=client_name,
    )


@contextlib.contextmanager
def unavailable_on_error(op: str) -> Iterator[None]:
    """Raise every "cannot reach Redis" error as BackendUnavailable."""
    try:
        yield
    except UNREACHABLE as exc:
        raise BackendUnavailable(
            f"Redis unavailable during {op}: {type(exc).__name__}: {exc}"
        ) from exc
