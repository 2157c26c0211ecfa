"""`drain`: a `Channel` handed out one item at a time, as an async generator.

`buffer`, `merge` and `heartbeat` return this. It is a consumer of the channel's API
(`hand_out` / `wake_producers` / `take_one` / `wait_ready`), like the response engine,
which takes the same channel in batches (`take_all` / `release`).

Promises (on top of the channel's):

- Items come out in the order the channel keeps; a source's error is raised after the
  items buffered before it, once every source has ended.
- An item counts against the capacity until it is handed out (yielded): the producer
  may run up to `capacity` items ahead of the item the consumer has just received, and
  a producer waiting for room is woken as an item leaves. In ``"suspend"`` mode the
  items are taken from the channel a ready batch at a time (`hand_out`) and the
  batch's items not yet handed out still count; with a lossy
  strategy they are taken one at a time (`take_one`), so that a drop always reaches the
  oldest item not yet handed out.
- With `interval`, ``beat()`` is yielded whenever that many seconds pass without an
  item (the rule of `Channel.wait_ready`).
- Closing the generator (``aclose()``, or its consumer cancelled) closes the channel
  (`Channel.aclose`): every producer is cancelled and its source's cleanup has run when
  it returns.

Why a batch at a time in ``"suspend"`` mode: handing out an item from a batch costs a
``for`` step and one truth test (is a producer waiting for room?), where taking the
items one by one from the shared queue costs a call per item. The channel reads what
is left of the batch from the iterator itself (its length hint) when a producer needs
room, so the hand-out keeps no count of its own.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterable, Callable, Iterable
from typing import Any, TypeVar, overload

from streamfx._core.channel import Channel

T = TypeVar("T")
B = TypeVar("B")


@overload
def drain(
    channel: Channel[T], sources: Iterable[AsyncIterable[T]], name: str
) -> AsyncGenerator[T, None]: ...


@overload
def drain(
    channel: Channel[T],
    sources: Iterable[AsyncIterable[T]],
    name: str,
    *,
    interval: float,
    beat: Callable[[], B],
) -> AsyncGenerator[T | B, None]: ...


def drain(
    channel: Channel[T],
    sources: Iterable[AsyncIterable[T]],
    name: str,
    *,
    interval: float | None = None,
    beat: Callable[[], Any] | None = None,
) -> AsyncGenerator[Any, None]:
    """Start `channel` on `sources` (producer tasks named after `name`) at the first
    iteration and yield its items one at a time until every source has ended; then
    raise a source's error if one failed (see the module docstring for the rules)."""
    return _drain(channel, sources, name, interval, beat)


async def _drain(
    channel: Channel[T],
    sources: Iterable[AsyncIterable[T]],
    name: str,
    interval: float | None,
    beat: Callable[[], Any] | None,
) -> AsyncGenerator[Any, None]:
    channel.start(sources, name)
    lossless = channel.lossless
    room_waiters = channel.room_waiters
    take_one = channel.take_one
    try:
        while True:
            if lossless:
                for item in channel.hand_out():
                    if room_waiters:
                        channel.wake_producers()
                    yield item
            else:
                # Only this consumer shortens the queue (a sliding drop replaces an
                # item): each item counted here is still there when its turn comes.
                for _ in range(channel.waiting):
                    yield take_one()
            if not await channel.wait_ready(interval):  # at once if an item waits
                assert beat is not None
                yield beat()
            elif not channel.waiting and channel.done:
                break
        channel.raise_if_failed()
    finally:
        await channel.aclose()
