"""Instrumented async sources for the tests: they record how far they got and
whether their cleanup ran."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Set
from dataclasses import dataclass, field


@dataclass
class Probe:
    """What a source did: items produced, whether it started and was cleaned up."""

    produced: int = 0
    started: bool = False
    cleanups: int = 0
    log: list[str] = field(default_factory=list)


async def counting(
    n: int, probe: Probe, *, delay: float = 0.0, fail_at: int | None = None
) -> AsyncIterator[int]:
    """Yield 0..n-1 (sleeping `delay` before each), raising at index `fail_at`."""
    probe.started = True
    try:
        for i in range(n):
            if delay:
                await asyncio.sleep(delay)
            else:
                await asyncio.sleep(0)
            if i == fail_at:
                raise RuntimeError(f"source failed at {i}")
            probe.produced += 1
            yield i
    finally:
        probe.cleanups += 1


async def forever(probe: Probe) -> AsyncIterator[int]:
    """An endless source that suspends on every item."""
    probe.started = True
    i = 0
    try:
        while True:
            await asyncio.sleep(0)
            probe.produced += 1
            yield i
            i += 1
    finally:
        probe.cleanups += 1


async def burst(
    count: int, *, pauses: Set[int] = frozenset(), finished: asyncio.Event | None = None
) -> AsyncIterator[int]:
    """Yield 0..count-1 all at once (it never suspends) except just before each index
    in `pauses`, so bursts of any size reach the consumer; set `finished` at the end."""
    for index in range(count):
        if index in pauses:
            await asyncio.sleep(0)
        yield index
    if finished is not None:
        finished.set()


async def settle() -> None:
    """Give every ready task many turns of the event loop (no wall-clock wait)."""
    for _ in range(50):
        await asyncio.sleep(0)


def pulled_source(pulled: list[int], gate: asyncio.Event | None = None) -> AsyncIterator[int]:
    """0, 1, 2, ... recording each item as it is pulled; waits for `gate` after 0."""

    async def source() -> AsyncIterator[int]:
        index = 0
        while True:
            pulled.append(index)
            yield index
            if index == 0 and gate is not None:
                await gate.wait()
            index += 1

    return source()


class Upstream:
    """A source fed by the test (an upstream queue, as a publisher's subscriber has):
    `pulled` lists what the producer took from it."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[int] = asyncio.Queue()
        self.pulled: list[int] = []
        self.published = 0

    async def source(self) -> AsyncIterator[int]:
        while True:
            item = await self.queue.get()
            self.pulled.append(item)
            yield item

    async def publish(self, count: int) -> None:
        """`count` more items, the loop run after each (a ticking publisher)."""
        for _ in range(count):
            self.queue.put_nowait(self.published)
            self.published += 1
            await settle()
