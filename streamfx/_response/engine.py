"""`encode_batches`: the shared engine under every response body.

A source runs in its own task into a bounded `Channel` (the `buffer` machinery); the
body pulls *every item that is ready* at once, encodes them with one call, and yields
one chunk. So a producer that is ahead of the client sends many items per write, and a
lone item leaves at once, without waiting for company.

Promises:

- Memory: at most ``policy.capacity`` items are held. Items taken out for a batch are
  counted against the capacity until the batch has been handed on (yielded): a
  ``"suspend"`` producer is woken only after that, so a slow client slows it.
- Keep-alive: with `keepalive` set, `beat` is yielded whenever that many seconds pass
  without a chunk.
- Order is kept; the source's error is raised after the chunks of the items before it.
- Metrics: ``stream_opened`` at the first iteration, ``items_sent`` per chunk (items
  and bytes), ``items_dropped`` per dropped item, ``stream_closed`` exactly once with
  the duration and outcome.
- Closing the body cancels the source's task and waits for its cleanup.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, AsyncIterable, Callable
from typing import TypeVar

from streamfx._core.channel import Channel
from streamfx._core.policy import BufferPolicy
from streamfx._core.shutdown import on_shutdown, shutdown_requested
from streamfx.metrics import MetricsHook, Outcome, get_metrics

T = TypeVar("T")


def encode_batches(
    source: AsyncIterable[T],
    policy: BufferPolicy,
    encode: Callable[[list[T]], bytes],
    *,
    kind: str,
    name: str = "",
    prefix: bytes = b"",
    finish: Callable[[], bytes] | None = None,
    keepalive: float | None = None,
    beat: bytes = b"",
    on_drop: Callable[[T], object] | None = None,
    metrics: MetricsHook | None = None,
    farewell: bytes | None = None,
) -> AsyncGenerator[bytes, None]:
    """Encode `source` in batches of ready items; see the module docstring.

    `prefix` is yielded first, before any item is awaited (an SSE stream uses it to get
    its headers out at once). `finish()` is called when the source is exhausted and
    its bytes, if any, are the last chunk.

    With `farewell` set (even to ``b""``) the stream is *drainable*: when a shutdown is
    requested (`streamfx.request_shutdown`) it sends the items it already holds, then
    `farewell`, and ends cleanly (outcome ``"completed"``) without waiting for the
    source, whose task is cancelled as on any close.
    """
    hook = metrics if metrics is not None else get_metrics()

    def dropped(item: T) -> None:
        hook.items_dropped(kind, name, 1)
        if on_drop is not None:
            on_drop(item)

    channel: Channel[T] = Channel(policy.capacity, policy.strategy, dropped)
    return _run(
        channel, source, encode, kind, name, prefix, finish, keepalive, beat, hook, farewell
    )


async def _run(
    channel: Channel[T],
    source: AsyncIterable[T],
    encode: Callable[[list[T]], bytes],
    kind: str,
    name: str,
    prefix: bytes,
    finish: Callable[[], bytes] | None,
    keepalive: float | None,
    beat: bytes,
    hook: MetricsHook,
    farewell: bytes | None,
) -> AsyncGenerator[bytes, None]:
    hook.stream_opened(kind, name)
    started = time.monotonic()
    outcome: Outcome = "closed"
    channel.start((source,), f"streamfx.{kind}")
    items = channel.items
    unsubscribe = on_shutdown(channel.wake) if farewell is not None else None
    try:
        if prefix:
            yield prefix
        while True:
            if items:
                batch = list(items)
                items.clear()
                chunk = encode(batch)
                hook.items_sent(kind, name, len(batch), len(chunk))
                if chunk:
                    yield chunk
                channel.release()
                continue
            if channel.done:
                break
            if unsubscribe is not None and shutdown_requested():
                break  # drained: what was held has been sent
            if channel.producer_scheduled:
                await asyncio.sleep(0)  # the woken producer refills in this loop iteration
                continue
            if keepalive is None:
                await channel.wait()
            elif not await channel.wait(keepalive):
                yield beat
        if channel.error is not None:
            raise channel.error
        if not channel.done:  # ended by a shutdown request
            if farewell:
                hook.items_sent(kind, name, 0, len(farewell))
                yield farewell
        elif finish is not None:
            tail = finish()
            if tail:
                hook.items_sent(kind, name, 0, len(tail))
                yield tail
        outcome = "completed"
    except (Exception, asyncio.CancelledError) as exc:
        outcome = "closed" if isinstance(exc, asyncio.CancelledError) else "error"
        raise
    finally:
        if unsubscribe is not None:
            unsubscribe()
        try:
            await channel.aclose()
        finally:
            hook.stream_closed(kind, name, time.monotonic() - started, outcome)
