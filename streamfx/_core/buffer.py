"""`buffer`: decouple a producer from its consumer through a bounded buffer."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterable, Callable
from typing import TypeVar

from streamfx._core.channel import Channel
from streamfx._core.drain import drain
from streamfx._core.policy import Strategy, check_capacity, check_stall_after, check_strategy

T = TypeVar("T")


def buffer(
    source: AsyncIterable[T],
    capacity: int,
    strategy: Strategy = "suspend",
    *,
    on_drop: Callable[[T], object] | None = None,
    stall_after: float | None = None,
) -> AsyncGenerator[T, None]:
    """Pull `source` in its own task into a buffer of at most `capacity` items.

    - ``"suspend"``: lossless; when the buffer is full the producer waits (backpressure).
    - ``"sliding"``: when full, the oldest waiting item is dropped; the newest gets in.
    - ``"dropping"``: when full, the incoming item is dropped.

    A lossy strategy drops only while the consumer is away (the code iterating this
    stream is awaiting something else, such as a write); while it waits for the next
    item, a full buffer makes the producer wait instead, so a burst into a consumer
    that keeps up loses nothing, however fast the source is.

    `stall_after` (seconds; None, the default: never) pauses a lossy buffer whose
    consumer has been away that long (counted from its last take) once the buffer is
    full (at once if it was away that long when the buffer filled): the producer keeps
    the item it had just pulled and pulls nothing more from `source` (what `source`
    would have produced stays there) until the consumer takes again; then it resumes
    at once. The pause drops nothing: the held items come out in order, then the item
    in hand, then what `source` yields next. Without it a lossy buffer keeps pulling
    and dropping for as long as its consumer is away (the newest items are kept).
    Meaningless, and accepted, with ``"suspend"``.

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
    `strategy` is unknown; for `stall_after`, `TypeError` if it is not a number or
    None and `ValueError` if it is not positive and finite.
    """
    channel: Channel[T] = Channel(
        check_capacity(capacity),
        check_strategy(strategy),
        on_drop,
        compact=False,
        stall_after=check_stall_after(stall_after),
    )
    return drain(channel, (source,), "streamfx.buffer")
