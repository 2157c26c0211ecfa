"""What stalled clients cost everybody else: the event loop's time per published item
with `STALLED` SSE bodies whose clients stopped reading (issue 15, item 10).

Run: ``make bench`` or
``.venv/bin/python -m pytest bench/test_bench_stalled.py --benchmark-enable -q``.

One publisher wakes every subscriber's source at each publish (an ``asyncio.Event``
per item, as a broadcast does). Each body has sent its first chunk and is then left
suspended, as an adapter leaves it while a write to a client that reads nothing waits
(until the write timeout evicts it). A round publishes `PUBLISHES` items and lets the
loop run each time until the subscribers have taken them. Rows:

- ``publisher alone``: no subscriber (the floor);
- ``sse() sliding`` (the default) and ``sse() dropping``: the buffer is full, so each
  published item is pulled and dropped (the newest kept with sliding);
- ``sse() suspend``: the producer waits for room, so the source is not pulled;
- ``generator pulled per write``: how sse-starlette and aiohttp-sse run a source: the
  next item is pulled only when the previous write has finished, so a stalled client's
  source is not pulled either (and nothing is dropped: it is simply behind);
- ``source drained by a bare task``: each source pulled by a task of its own that keeps
  the last item and nothing else: the source's own wake (``Event.wait`` -> task step ->
  generator) without streamfx. ``sse() sliding`` minus this row is streamfx's share of
  a stalled sliding stream (its producer loop, the drop, its bookkeeping);
- ``Broadcast sliding`` and ``Broadcast disconnect``: the same items published once to
  a `streamfx.broadcast.Broadcast` hub (``buffer=64``) whose subscribers each wrote
  their first chunk and are then left suspended: a stalled subscriber is a cursor into
  the topic's log, woken by nothing.

Divide a round by `PUBLISHES` for the cost of one publish, by `STALLED` again for the
cost of one stalled stream per published item.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

import streamfx
from streamfx.broadcast import Broadcast

STALLED = 200
PUBLISHES = 200
Runner = Callable[[Callable[[], Awaitable[Any]]], Any]


class Publisher:
    """Wakes every follower per item (an `asyncio.Event`), or publishes it to `hub`."""

    def __init__(self, hub: Broadcast | None = None) -> None:
        self.event = asyncio.Event()
        self.item = ""
        self.hub = hub

    async def publish(self, item: str) -> None:
        if self.hub is not None:
            await self.hub.publish("ticks", item)
        else:
            self.item = item
            event, self.event = self.event, asyncio.Event()
            event.set()
        for _ in range(3):  # every woken subscriber runs, and its producer after it
            await asyncio.sleep(0)

    async def follow(self) -> AsyncIterator[str]:
        yield "first"
        while True:
            await self.event.wait()
            yield self.item


class Stalled:
    """`STALLED` subscribers whose clients read nothing any more."""

    def __init__(self, shape: str) -> None:
        overflow = shape.removeprefix("Broadcast ")
        hub = Broadcast(buffer=64, overflow=overflow) if overflow != shape else None  # type: ignore[arg-type]
        self.publisher = Publisher(hub)
        self.shape = shape
        self.bodies: list[AsyncIterator[Any]] = []
        self.drainers: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        strategy = self.shape.removeprefix("sse() ")
        hub = self.publisher.hub
        for _ in range(STALLED if self.shape != "publisher alone" else 0):
            body: AsyncIterator[Any]
            if self.shape == "source drained by a bare task":
                self.drainers.append(asyncio.create_task(drained(self.publisher.follow())))
                continue
            if hub is not None:
                body = hub.subscribe("ticks", heartbeat=None)
                await anext(body)  # its first chunk; the next write waits for the client
            elif self.shape == "generator pulled per write":
                body = self.publisher.follow()
                await anext(body)  # its first write; the next waits for the client
            else:
                policy = streamfx.BufferPolicy(64, strategy)  # type: ignore[arg-type]
                body = aiter(streamfx.sse(self.publisher.follow(), buffer=policy).body)
                await anext(body)  # the opening comment
                await anext(body)  # the first event; then the write blocks
            self.bodies.append(body)
        for index in range(80):  # fill the buffers
            await self.publisher.publish(str(index))

    async def publish(self) -> int:
        for index in range(PUBLISHES):
            await self.publisher.publish(str(index))
        return PUBLISHES

    async def close(self) -> None:
        for body in self.bodies:
            await body.aclose()  # type: ignore[attr-defined]
        for task in self.drainers:
            task.cancel()
        await asyncio.gather(*self.drainers, return_exceptions=True)
        if self.publisher.hub is not None:
            await self.publisher.hub.close(grace=0)


async def drained(source: AsyncIterator[str]) -> None:
    """Pull `source` forever, keeping only its last item."""
    last = ""
    async for item in source:
        last = item
    del last


SHAPES = [
    "publisher alone",
    "sse() sliding",
    "sse() dropping",
    "sse() suspend",
    "generator pulled per write",
    "source drained by a bare task",
    "Broadcast sliding",
    "Broadcast disconnect",
]


@pytest.mark.benchmark(group=f"stalled: one publish, {STALLED} stalled streams")
@pytest.mark.parametrize("shape", SHAPES)
def test_publish_beside_stalled_streams(benchmark: Any, run: Runner, shape: str) -> None:
    stalled = Stalled(shape)
    run(stalled.start)
    try:
        benchmark.extra_info["publishes"] = PUBLISHES
        benchmark.extra_info["stalled"] = STALLED
        result = benchmark.pedantic(lambda: run(stalled.publish), rounds=10, warmup_rounds=1)
        assert result == PUBLISHES
    finally:
        run(stalled.close)


# -- the drop path alone -------------------------------------------------------------

ITEMS = 20_000


async def never_suspending(n: int, done: asyncio.Event) -> AsyncIterator[str]:
    """`n` items as fast as they are taken (the same object each time), then `done`
    and nothing more: no publisher, so no wake-up of the loop per item."""
    item = "x"
    yield "first"
    for _ in range(n):
        yield item
    done.set()
    await asyncio.Event().wait()


async def pull_through(shape: str) -> int:
    """`ITEMS` items through `shape`: a bare loop over the source, or an ``sse()`` body
    whose client is away (the body suspended after its first event): every item then
    takes the drop path."""
    done = asyncio.Event()
    source = never_suspending(ITEMS, done)
    if shape == "source pulled by a bare loop":
        taken = 0
        async for item in source:
            taken += 1
            if taken > ITEMS:  # "first" and the `ITEMS` items
                break
            del item
        await source.aclose()  # type: ignore[attr-defined]
        return ITEMS
    policy = streamfx.BufferPolicy(64, shape.removeprefix("sse() "))  # type: ignore[arg-type]
    body = aiter(streamfx.sse(source, buffer=policy).body)
    await anext(body)  # the opening comment
    await anext(body)  # the first event: the producer now runs while the client is away
    await done.wait()
    await body.aclose()  # type: ignore[attr-defined]
    return ITEMS


DROP_SHAPES = ["source pulled by a bare loop", "sse() sliding", "sse() dropping"]


@pytest.mark.benchmark(group=f"drop path: {ITEMS} items, the consumer away")
@pytest.mark.parametrize("shape", DROP_SHAPES)
def test_drop_path(benchmark: Any, run: Runner, shape: str) -> None:
    """Streamfx's own share of a stalled lossy stream: ``sse() sliding`` minus the bare
    loop, per item (divide by `ITEMS`), with no wake-up of the source in either."""
    benchmark.extra_info["items"] = ITEMS
    result = benchmark.pedantic(
        lambda: run(lambda: pull_through(shape)), rounds=10, warmup_rounds=1
    )
    assert result == ITEMS
