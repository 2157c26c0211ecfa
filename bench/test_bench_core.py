"""Per-item cost of the core combinators, side by side with what people use instead.

Run: ``make bench`` or
``.venv/bin/python -m pytest bench/test_bench_core.py --benchmark-enable -q``.

Every benchmark moves N integers from a fast async-generator source to a fast
consumer. Divide a round's time by N for the per-item cost; compare rows of the same
group (they run in the same process, on the same loop).

Rows are timed in process CPU time (``time.process_time``), 30 rounds each: every row
is one single-threaded process doing CPU work, so CPU time is its whole cost, and on a
shared machine it is not inflated by the time other processes hold the CPU (wall-clock
medians there moved by 2x between runs). Quote medians and ratios of the same run.

Three rows of the hand-off group are yardsticks, not peers: ``two generator hops`` is
the source passed through one more async generator with no task (the least any stage
between a source and its consumer costs); ``streamfx.buffer(N): never full`` is a
buffer as large as the whole run, so its producer never waits: the difference between
it and ``buffer(64)`` is the price of one trip through the event loop per 64 items; and
``floor: deque + task, no checks`` is the least a bounded hand-off between two tasks
can do (a deque, a producer task that waits on one future when 64 items wait, a
consumer that takes them all at once and wakes it), with none of the promises of
`buffer` (no error, close or cancel handling, no per-item wake-up). It shows what the
event loop's trip per 64 items costs on the machine at hand: on asyncio's loop a trip
(one ``_run_once`` with two task steps) costs a few microseconds, which no buffer
bounded to 64 items can avoid.

What the floor is made of, per item: the two generator hops (the producer task's
``async for`` over the source, and the consumer's ``async for`` over the stage that
hands the batch out; ``two generator hops`` has the same two), an append and a length
test, and a 64th of one trip. A trip is asyncio's own Python code: ``_run_once`` (the
selector's ``select`` with a zero timeout, which is an ``epoll`` system call, the
clock), a ``Handle`` made by ``call_soon`` and run through ``Context.run`` for each of
the two tasks (the producer woken by its future, the consumer by its bare yield), and
a step of each task through its chain of coroutines. So ``floor`` is about ``two
generator hops`` plus a 64th of a trip, and a 64-item bound between two tasks on
asyncio's default loop cannot be cheaper than ``floor``; ``buffer(64)`` pays the same
trips plus its bookkeeping per refill (the checks that keep its promises).
"""

from __future__ import annotations

import asyncio
import time
import types
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Generator
from typing import Any

import pytest
from aiostream import pipe, stream

import streamfx

N = 20_000
ROUNDS = 30
Runner = Callable[[Callable[[], Awaitable[Any]]], Any]


async def source(n: int = N) -> AsyncIterator[int]:
    for i in range(n):
        yield i


async def drain(iterable: AsyncIterator[int]) -> int:
    count = 0
    async for _ in iterable:
        count += 1
    return count


async def bare_loop() -> int:
    return await drain(source())


async def queue_between_tasks() -> int:
    queue: asyncio.Queue[int | None] = asyncio.Queue(64)

    async def produce() -> None:
        async for item in source():
            await queue.put(item)
        await queue.put(None)

    task = asyncio.create_task(produce())
    count = 0
    while (await queue.get()) is not None:
        count += 1
    await task
    return count


async def aiostream_map() -> int:
    def identity(x: int, *_: int) -> int:
        return x

    xs = stream.iterate(source()) | pipe.map(identity)
    count = 0
    async with xs.stream() as streamer:
        async for _ in streamer:
            count += 1
    return count


async def streamfx_buffer() -> int:
    return await drain(streamfx.buffer(source(), 64, "suspend"))


async def two_generator_hops() -> int:
    async def stage(items: AsyncIterator[int]) -> AsyncIterator[int]:
        async for item in items:
            yield item

    return await drain(stage(source()))


async def bounded_floor(capacity: int = 64) -> int:
    items: deque[int] = deque()
    loop = asyncio.get_running_loop()
    room: list[asyncio.Future[None]] = []

    async def produce() -> None:
        async for item in source():
            items.append(item)
            if len(items) >= capacity:
                room.append(loop.create_future())
                await room[0]

    async def consume() -> AsyncIterator[int]:
        task = asyncio.create_task(produce())
        while True:
            await yield_now()  # the producer refills in this loop iteration
            if not items:
                if task.done():
                    break
                continue
            batch = list(items)
            items.clear()
            if room:
                room.pop().set_result(None)
            for item in batch:
                yield item
        await task

    return await drain(consume())


@types.coroutine
def yield_now() -> Generator[None, None, None]:
    yield


async def streamfx_buffer_never_full() -> int:
    return await drain(streamfx.buffer(source(), N, "suspend"))


async def hand_written_stage() -> int:
    seen = []

    async def stage(items: AsyncIterator[int]) -> AsyncIterator[int]:
        async for item in items:
            seen.append(item)
            yield item

    return await drain(stage(source()))


async def streamfx_tap() -> int:
    seen: list[int] = []
    return await drain(streamfx.tap(source(), seen.append))


async def hand_written_finally_stage() -> int:
    closed = []

    async def stage(items: AsyncIterator[int]) -> AsyncIterator[int]:
        try:
            async for item in items:
                yield item
        finally:
            closed.append(True)

    return await drain(stage(source()))


async def streamfx_ensuring() -> int:
    closed: list[bool] = []
    return await drain(streamfx.ensuring(source(), lambda: closed.append(True)))


BUFFER_PEERS = {
    "bare async for": bare_loop,
    "asyncio.Queue(64) + task": queue_between_tasks,
    "aiostream pipe.map": aiostream_map,
    "streamfx.buffer(64, suspend)": streamfx_buffer,
    "two generator hops": two_generator_hops,
    "streamfx.buffer(N): never full": streamfx_buffer_never_full,
    "floor: deque + task, no checks": bounded_floor,
}

STAGE_PEERS = {
    "bare async for": bare_loop,
    "hand-written stage (call fn)": hand_written_stage,
    "streamfx.tap": streamfx_tap,
    "hand-written stage (try/finally)": hand_written_finally_stage,
    "streamfx.ensuring": streamfx_ensuring,
}


def measure(benchmark: Any, run: Runner, make: Callable[[], Awaitable[int]]) -> None:
    benchmark.extra_info["items"] = N
    result = benchmark.pedantic(lambda: run(make), rounds=ROUNDS, warmup_rounds=2)
    assert result == N


@pytest.mark.benchmark(group="buffer: per-item hand-off", timer=time.process_time)
@pytest.mark.parametrize("name", list(BUFFER_PEERS))
def test_buffer_hand_off(benchmark: Any, run: Runner, name: str) -> None:
    measure(benchmark, run, BUFFER_PEERS[name])


@pytest.mark.benchmark(group="stage: per-item pass-through", timer=time.process_time)
@pytest.mark.parametrize("name", list(STAGE_PEERS))
def test_stage_cost(benchmark: Any, run: Runner, name: str) -> None:
    measure(benchmark, run, STAGE_PEERS[name])
