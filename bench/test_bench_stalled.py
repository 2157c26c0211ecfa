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
  source is not pulled either (and nothing is dropped: it is simply behind).

Divide a round by `PUBLISHES` for the cost of one publish, by `STALLED` again for the
cost of one stalled stream per published item.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

import streamfx

STALLED = 200
PUBLISHES = 200
Runner = Callable[[Callable[[], Awaitable[Any]]], Any]


class Publisher:
    def __init__(self) -> None:
        self.event = asyncio.Event()
        self.item = ""

    async def publish(self, item: str) -> None:
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
        self.publisher = Publisher()
        self.shape = shape
        self.bodies: list[AsyncIterator[Any]] = []

    async def start(self) -> None:
        strategy = self.shape.removeprefix("sse() ")
        for _ in range(STALLED if self.shape != "publisher alone" else 0):
            body: AsyncIterator[Any]
            if self.shape == "generator pulled per write":
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


SHAPES = [
    "publisher alone",
    "sse() sliding",
    "sse() dropping",
    "sse() suspend",
    "generator pulled per write",
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
