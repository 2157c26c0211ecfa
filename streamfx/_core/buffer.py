"""`buffer`: decouple a producer from its consumer through a bounded buffer."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterable, Callable
from typing import TypeVar

from streamfx._core.channel import Channel
from streamfx._core.policy import Strategy, check_capacity, check_strategy

T = TypeVar("T")


def buffer(
    source: AsyncIterable[T],
    capacity: int,
    strategy: Strategy = "suspend",
    *,
    on_drop: Callable[[T], object] | None = None,
) -> AsyncGenerator[T, None]:
    """Pull `source` in its own task into a buffer of at most `capacity` items.

    - ``"suspend"``: lossless; when the buffer is full the producer waits (backpressure).
    - ``"sliding"``: when full, the oldest waiting item is dropped; the newest gets in.
    - ``"dropping"``: when full, the incoming item is dropped.

    Order is kept in every strategy. `on_drop(item)` is called (synchronously, in the
    producer task) for each dropped item; if it raises, the stream fails with that error.
    The producer task starts on the first iteration. An error raised by `source`
    reaches the consumer after the items buffered before it.

    Closing the returned generator early (``aclose()``, leaving
    ``contextlib.aclosing``, cancelling the consumer) cancels the producer task, and the
    source's cleanup has run by the time ``aclose()`` returns; no task is left pending.

    Raises, at the call (before any iteration): `TypeError` if `capacity` is not an
    ``int``; `ValueError` if it is not positive or asks for "unbounded", or if
    `strategy` is unknown.
    """
    channel: Channel[T] = Channel(check_capacity(capacity), check_strategy(strategy), on_drop)
    return drain(channel, (source,), "streamfx.buffer")


async def drain(
    channel: Channel[T], sources: tuple[AsyncIterable[T], ...], name: str
) -> AsyncGenerator[T, None]:
    """Start `channel` on `sources` and yield its items until every source has ended."""
    channel.start(sources, name)
    items = channel.items
    popleft = items.popleft
    waiting_producers = channel.putters
    try:
        while True:
            while items:  # the hot path: Channel.pop() inlined
                item = popleft()
                if waiting_producers:
                    channel.release()
                yield item
            if channel.done:
                break
            if channel.producer_scheduled:
                await asyncio.sleep(0)  # the woken producer refills in this loop iteration
                continue
            await channel.wait()
        if channel.error is not None:
            raise channel.error
    finally:
        await channel.aclose()
