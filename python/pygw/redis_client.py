"""Redis plumbing shared by the storage, the broker and the rate limiter: one way to open a
client, one meaning of "Redis is unreachable", and one way to run Lua scripts (EVALSHA, loading
the script again when Redis lost its script cache)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import Iterator, Sequence
from typing import Any

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.client import Pipeline
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import MasterDownError, NoScriptError, ReadOnlyError
from redis.exceptions import TimeoutError as RedisTimeoutError

from pygw.core.errors import BackendUnavailable

UNREACHABLE: tuple[type[BaseException], ...] = (
    RedisConnectionError,  # includes BusyLoadingError (LOADING) and refused/reset sockets
    RedisTimeoutError,
    ReadOnlyError,  # a replica after failover: writes impossible until the master returns
    MasterDownError,
    OSError,
    TimeoutError,
)


async def _into_task() -> None:
    """redis-py's timeouts need a current Task; a handler's first step runs eagerly inside a
    uWS callback (see ``transport/eager.py``), where there is none. Yielding once moves the rest
    of the handler into a Task (a new pool connection would otherwise fail with "Timeout should
    be used inside a task")."""
    if asyncio.current_task() is None:
        await asyncio.sleep(0)


class _Pipeline(Pipeline):
    async def execute(self, raise_on_error: bool = True) -> list[Any]:
        await _into_task()
        return await super().execute(raise_on_error)


class TaskSafeRedis(Redis):
    """A client whose commands and pipelines may be awaited from an eagerly started handler."""

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        await _into_task()
        return await super().execute_command(*args, **options)

    def pipeline(self, transaction: bool = True, shard_hint: Any = None) -> _Pipeline:
        return _Pipeline(self.connection_pool, self.response_callbacks, transaction, shard_hint)


def connect(
    url: str,
    *,
    socket_timeout: float = 2.0,
    client_name: str | None = None,
    decode_responses: bool = False,
    max_connections: int = 128,
) -> TaskSafeRedis:
    """A pooled asyncio client (hiredis parser when installed) that reconnects by itself: a
    command failing on a dead pooled connection (e.g. after a Redis restart) is retried once on a
    new one, and while Redis is down calls fail fast. The pool *blocks* (up to
    ``socket_timeout``) when all ``max_connections`` are busy, instead of failing a burst of
    concurrent commands with "Too many connections"."""
    pool = BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=socket_timeout,
        decode_responses=decode_responses,
        socket_timeout=socket_timeout,
        socket_connect_timeout=socket_timeout,
        retry=Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
        client_name=client_name,
    )
    client = TaskSafeRedis(connection_pool=pool)
    client.auto_close_connection_pool = True  # aclose() closes the pool we made
    return client


@contextlib.contextmanager
def unavailable_on_error(op: str) -> Iterator[None]:
    """Raise every "cannot reach Redis" error as BackendUnavailable."""
    try:
        yield
    except UNREACHABLE as exc:
        raise BackendUnavailable(
            f"Redis unavailable during {op}: {type(exc).__name__}: {exc}"
        ) from exc


ScriptArg = str | bytes | int | float
ScriptCall = tuple[Sequence[str], Sequence[ScriptArg]]
"""(keys, args) of one script call."""


class LuaScript:
    """A script run by SHA1, loaded on demand (after a Redis restart or SCRIPT FLUSH)."""

    def __init__(self, name: str, source: str) -> None:
        self.name = name
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()

    async def run(self, client: Redis, keys: Sequence[str], args: Sequence[ScriptArg]) -> Any:
        try:
            return await client.evalsha(self.sha, len(keys), *keys, *args)
        except NoScriptError:
            await client.script_load(self.source)
            return await client.evalsha(self.sha, len(keys), *keys, *args)

    async def run_many(self, client: Redis, calls: Sequence[ScriptCall]) -> list[Any]:
        """Every call in one pipeline. A call's own error is returned in its place, not raised
        (NOSCRIPT excepted: the script is loaded and those calls run again)."""
        results = await self._pipeline(client, calls)
        missing = [i for i, r in enumerate(results) if isinstance(r, NoScriptError)]
        if missing:
            await client.script_load(self.source)
            again = await self._pipeline(client, [calls[i] for i in missing])
            for i, result in zip(missing, again, strict=True):
                results[i] = result
        return results

    async def _pipeline(self, client: Redis, calls: Sequence[ScriptCall]) -> list[Any]:
        pipe = client.pipeline(transaction=False)
        for keys, args in calls:
            pipe.evalsha(self.sha, len(keys), *keys, *args)
        return list(await pipe.execute(raise_on_error=False))
