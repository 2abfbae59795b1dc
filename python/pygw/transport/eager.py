"""Run a coroutine's first step immediately, like a JavaScript promise.

Most gateway handlers finish without waiting (memory backend, cached tokens, pending-write
views). Running the first step inside the uWS callback lets those answer while uWS still has the
socket corked — no asyncio Task, no extra loop iteration, no extra syscall. Handlers that do wait
continue in a Task that resumes the very coroutine.
"""

from __future__ import annotations

import asyncio
import types
from collections.abc import Coroutine, Generator
from typing import Any

PENDING: Any = object()
"""Returned by :func:`start` when the coroutine suspended and continues in a Task."""


def start(coro: Coroutine[Any, Any, Any]) -> tuple[Any, asyncio.Task[Any] | None]:
    """Step ``coro`` once. Returns ``(result, None)`` if it finished, else ``(PENDING, task)``.

    Exceptions raised during the first step propagate to the caller.
    """
    try:
        yielded = coro.send(None)
    except StopIteration as stop:
        return stop.value, None
    task = asyncio.get_running_loop().create_task(_continue(coro, yielded))
    return PENDING, task


async def _continue(coro: Coroutine[Any, Any, Any], yielded: Any) -> Any:
    return await _drive(coro, yielded)


@types.coroutine
def _drive(coro: Coroutine[Any, Any, Any], yielded: Any) -> Generator[Any, Any, Any]:
    # Re-yield what the coroutine yielded (a Future with _asyncio_future_blocking set, or None
    # for a bare yield): the Task treats it exactly as if the coroutine had yielded it itself.
    while True:
        try:
            sent = yield yielded
        except BaseException as exc:  # cancellation and thrown exceptions go to the coroutine
            try:
                yielded = coro.throw(exc)
            except StopIteration as stop:
                return stop.value
        else:
            try:
                yielded = coro.send(sent)
            except StopIteration as stop:
                return stop.value
