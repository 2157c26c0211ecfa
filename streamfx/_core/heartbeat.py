"""`heartbeat`: fill silences in a stream with a keep-alive value."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterable, Callable
from typing import TypeVar, overload

from streamfx._core.channel import Channel
from streamfx._core.drain import drain

T = TypeVar("T")
B = TypeVar("B")


@overload
def heartbeat(
    source: AsyncIterable[T], interval: float, beat: Callable[[], B]
) -> AsyncGenerator[T | B, None]: ...


@overload
def heartbeat(
    source: AsyncIterable[T], interval: float, beat: B
) -> AsyncGenerator[T | B, None]: ...


def heartbeat(
    source: AsyncIterable[T], interval: float, beat: B | Callable[[], B]
) -> AsyncGenerator[T | B, None]:
    """Pass the items of `source` through and emit `beat` during silences.

    Whenever `interval` seconds pass without an item, `beat` is emitted (if `beat` is
    callable it is called with no arguments to make each beat). Each item resets the
    timer, so a busy stream gets no beats. The stream ends when the source ends, and an
    error from the source is raised after the items before it.

    The source is read by a task one item ahead (so that waiting for it can be timed
    out without cancelling it); closing this stream cancels that task and closes the
    source. The silence is counted from when the consumer comes back for the next item
    (the time it spends with an item or a beat is not silence), the same rule as the
    keep-alive of the response bodies. The silences of every stream on a loop share
    the loop's one timer (`streamfx._core.deadlines`): an idle stream holds none.
    Raises `ValueError` at the call if `interval` is not a positive number.
    """
    if isinstance(interval, bool) or not isinstance(interval, int | float) or not interval > 0:
        raise ValueError(
            f"heartbeat interval must be a positive number of seconds, got {interval!r}"
        )
    if interval == float("inf"):
        raise ValueError("heartbeat interval must be finite")
    make: Callable[[], B] = beat if callable(beat) else (lambda: beat)
    channel: Channel[T] = Channel(1, "suspend", compact=False)
    return drain(channel, (source,), "streamfx.heartbeat", interval=float(interval), beat=make)
