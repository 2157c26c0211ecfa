"""Small helpers shared by the combinators: closing sources, awaiting maybe-async calls,
cancelling tasks and waiting for their cleanup, yielding to the loop once, resolving a
future that may be done."""

from __future__ import annotations

import asyncio
import inspect
import types
from collections.abc import AsyncIterable, AsyncIterator, Callable, Generator, Iterable
from typing import Any


async def aclose_iterator(iterator: AsyncIterator[Any] | AsyncIterable[Any]) -> None:
    """Call ``iterator.aclose()`` if it has one (async generators do); otherwise nothing."""
    aclose = getattr(iterator, "aclose", None)
    if aclose is not None:
        await aclose()


async def call_maybe_async(fn: Callable[..., object], *args: object) -> None:
    """Call ``fn(*args)`` and, if it returned an awaitable, await it."""
    result = fn(*args)
    if result is not None and inspect.isawaitable(result):
        await result


def is_async_callable(fn: object) -> bool:
    """True for ``async def`` functions, partials of them and objects with an async
    ``__call__``. Sync callables that happen to return awaitables are handled by
    `call_maybe_async` instead."""
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
        getattr(fn, "__call__", None)  # noqa: B004 - we want the bound method, not callable()
    )


async def cancel_and_wait(tasks: Iterable[asyncio.Task[Any]]) -> None:
    """Cancel `tasks` and return only when every one of them has finished.

    If the caller is itself cancelled while waiting, it keeps waiting (so that the
    tasks' cleanup has really run when this returns) and re-raises `CancelledError`
    afterwards.
    """
    pending = {task for task in tasks if not task.done()}
    for task in pending:
        task.cancel()
    interrupted = False
    while pending:
        try:
            _, pending = await asyncio.wait(pending)
        except asyncio.CancelledError:
            interrupted = True
    if interrupted:
        raise asyncio.CancelledError


@types.coroutine
def yield_now() -> Generator[None, None, None]:
    """Let every other ready task run once (``asyncio.sleep(0)`` without its overhead)."""
    yield


def resolve(future: asyncio.Future[Any], value: object) -> None:
    """Set `future`'s result to `value` unless it is already done (cancelled, say)."""
    if not future.done():
        future.set_result(value)
