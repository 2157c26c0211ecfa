"""`tap`: look at every item without changing the stream."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterable, Awaitable, Callable
from typing import TypeVar

from streamfx._core.util import aclose_iterator, is_async_callable

T = TypeVar("T")


def tap(
    source: AsyncIterable[T], fn: Callable[[T], object] | Callable[[T], Awaitable[object]]
) -> AsyncGenerator[T, None]:
    """Call ``fn(item)`` for each item, then pass the item on unchanged.

    `fn` may be sync or async; an async `fn` (or a sync one that returns an awaitable)
    is awaited before the item is passed on, so it runs in order, one item at a time.
    If `fn` raises, the stream raises that error and the source is closed. Closing
    this stream closes the source.
    """
    if not callable(fn):
        raise TypeError(f"tap() needs a callable, got {type(fn).__name__}")
    if is_async_callable(fn):
        return _tap_async(source, fn)  # type: ignore[arg-type]
    return _tap_sync(source, fn)


async def _tap_sync(source: AsyncIterable[T], fn: Callable[[T], object]) -> AsyncGenerator[T, None]:
    iterator = aiter(source)
    try:
        async for item in iterator:
            result = fn(item)
            if result is not None and isinstance(result, Awaitable):
                await result
            yield item
    finally:
        await aclose_iterator(iterator)


async def _tap_async(
    source: AsyncIterable[T], fn: Callable[[T], Awaitable[object]]
) -> AsyncGenerator[T, None]:
    iterator = aiter(source)
    try:
        async for item in iterator:
            await fn(item)
            yield item
    finally:
        await aclose_iterator(iterator)
