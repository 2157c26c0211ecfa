"""`merge`: interleave several sources as their items arrive."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterable
from typing import TypeVar

from streamfx._core.channel import Channel
from streamfx._core.drain import drain
from streamfx._core.policy import check_capacity

T = TypeVar("T")


def merge(*sources: AsyncIterable[T], capacity: int = 16) -> AsyncGenerator[T, None]:
    """Yield the items of all `sources` as they arrive.

    Each source is pulled by its own task into one shared buffer of `capacity` items
    (lossless: a source waits while the buffer is full), so each source's own order is
    kept while the sources interleave. The merged stream ends when every source has
    ended. If one source raises, the others are cancelled, their cleanup runs, and the
    error reaches the consumer after the items already buffered. Closing the merged
    stream early cancels every source and waits for their cleanup.
    """
    channel: Channel[T] = Channel(check_capacity(capacity), "suspend", compact=False)
    return drain(channel, sources, "streamfx.merge")
