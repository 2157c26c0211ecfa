"""`progress`: periodic reports of how far a stream has got."""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, AsyncIterable, Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from streamfx._core.util import aclose_iterator, call_maybe_async

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Progress:
    """A snapshot: items so far, bytes so far (for ``bytes``-like items), seconds since
    the first iteration, and whether this is the final report."""

    count: int
    bytes: int
    elapsed: float
    done: bool


Reporter = Callable[[Progress], object] | Callable[[Progress], Awaitable[object]]


def progress(
    source: AsyncIterable[T],
    report: Reporter,
    *,
    every: int | None = None,
    interval: float | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> AsyncGenerator[T, None]:
    """Pass `source` through, calling ``report(Progress(...))`` as it goes.

    A report is made after every `every` items and/or when at least `interval` seconds
    have passed since the last report (checked as items arrive), and exactly once more
    at the end, with ``done=True``, however the stream ends (exhaustion, error, early
    close, cancellation). `report` may be async; it is awaited before the stream goes
    on. Items pass through unchanged. Raises `ValueError` at the call for a `every`
    that is not a positive int or an `interval` that is not a positive number.
    """
    if every is not None and (isinstance(every, bool) or not isinstance(every, int) or every < 1):
        raise ValueError(f"every must be a positive int or None, got {every!r}")
    if interval is not None and (
        isinstance(interval, bool) or not isinstance(interval, int | float) or not interval > 0
    ):
        raise ValueError(f"interval must be a positive number of seconds or None, got {interval!r}")
    return _progress(source, report, every, interval, clock)


async def _progress(
    source: AsyncIterable[T],
    report: Reporter,
    every: int | None,
    interval: float | None,
    clock: Callable[[], float],
) -> AsyncGenerator[T, None]:
    iterator = aiter(source)
    started = last = clock()
    count = nbytes = 0
    try:
        async for item in iterator:
            count += 1
            if isinstance(item, bytes | bytearray):
                nbytes += len(item)
            elif isinstance(item, memoryview):
                nbytes += item.nbytes
            due = every is not None and count % every == 0
            if interval is not None:
                now = clock()
                if now - last >= interval:
                    due = True
            if due:
                last = clock()
                await call_maybe_async(report, Progress(count, nbytes, last - started, False))
            yield item
    finally:
        try:
            await aclose_iterator(iterator)
        finally:
            await call_maybe_async(report, Progress(count, nbytes, clock() - started, True))
