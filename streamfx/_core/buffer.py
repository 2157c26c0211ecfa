"""`buffer`: decouple a producer from its consumer through a bounded buffer."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterable, Callable
from typing import TypeVar

from streamfx._core.channel import Channel
from streamfx._core.drain import drain
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

    A lossy strategy drops only while the consumer is away (the code iterating this
    stream is awaiting something else, such as a write); while it waits for the next
    item, a full buffer makes the producer wait instead, so a burst into a consumer
    that keeps up loses nothing, however fast the source is.

    Order is kept in every strategy. `on_drop(item)` is called (synchronously, in the
    producer task) exactly once for each dropped item; if it raises, the stream fails
    with that error. The producer task starts on the first iteration. An error raised
    by `source` reaches the consumer after the items buffered before it. The item the
    consumer has just received does not count against `capacity`: the producer may
    fetch up to `capacity` items ahead of it.

    Closing the returned generator early (``aclose()``, leaving
    ``contextlib.aclosing``, cancelling the consumer) cancels the producer task, and the
    source's cleanup has run by the time ``aclose()`` returns; no task is left pending.

    Raises, at the call (before any iteration): `TypeError` if `capacity` is not an
    ``int``; `ValueError` if it is not positive or asks for "unbounded", or if
    `strategy` is unknown.
    """
    channel: Channel[T] = Channel(
        check_capacity(capacity), check_strategy(strategy), on_drop, compact=False
    )
    return drain(channel, (source,), "streamfx.buffer")
