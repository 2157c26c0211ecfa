"""`Subscription`, one subscriber's body: what it holds while idle, and how it ends."""

from __future__ import annotations

import asyncio
import gc
import tracemalloc
from collections.abc import Iterator

import pytest

import streamfx
from streamfx.broadcast import Broadcast
from streamfx.metrics import InMemoryMetrics
from tests._broadcast_reader import until_waiting


@pytest.fixture(autouse=True)
def clean_shutdown_flag() -> Iterator[None]:
    streamfx.reset_shutdown()
    yield
    streamfx.reset_shutdown()


async def test_an_idle_subscriber_holds_no_frame_of_its_body() -> None:
    """Issue 13 (idle memory, 5,000 subscribers at <= 12 KB each): an async generator as
    the body held its frame (every local of the start and of the live loop), its
    ``anext`` awaitable through every wait and an entry in the loop's set of async
    generators: 2,031 bytes per idle subscriber here with its reading task, against
    about 1,480 once the body is a `Subscription` (Python 3.11). Everything allocated for 500
    idle subscribers, each read by a task, is counted per subscriber."""
    hub = Broadcast()
    n = 500
    started = 0
    everyone = asyncio.Event()

    async def read() -> None:
        nonlocal started
        async for _ in hub.subscribe("t", heartbeat=15.0):
            started += 1
            if started == n:
                everyone.set()

    warm_up = [asyncio.create_task(read()) for _ in range(10)]  # caches, free lists
    await until_waiting(hub, 10)
    started = 0
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        readers = [asyncio.create_task(read()) for _ in range(n)]
        async with asyncio.timeout(5):
            await everyone.wait()
        await until_waiting(hub, n + 10)
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
        for reader in warm_up + readers:
            reader.cancel()
        await asyncio.gather(*warm_up, *readers, return_exceptions=True)
    held = sum(stat.size_diff for stat in after.compare_to(before, "filename")) / n
    assert held <= 1750, f"{held:.0f} bytes per idle subscriber"
    assert hub.subscribers == 0


async def test_a_cancelled_wait_ends_the_subscription_at_once(metrics: InMemoryMetrics) -> None:
    """As a generator would: the reader's cancellation, thrown into the wait, lets go of
    the topic and reports the stream closed before the task ends (no ``aclose``)."""
    hub = Broadcast()
    body = hub.subscribe("t", heartbeat=15.0)
    await anext(body)
    reader = asyncio.ensure_future(anext(body))
    await until_waiting(hub, 1)
    reader.cancel()
    with pytest.raises(asyncio.CancelledError):
        await reader
    assert hub.subscribers == 0
    assert metrics.outcomes["broadcast", "", "closed"] == 1
    with pytest.raises(StopAsyncIteration):
        await anext(body)
    await body.aclose()  # type: ignore[attr-defined]
    assert metrics.outcomes["broadcast", "", "closed"] == 1, "ended once"


async def test_a_subscription_dropped_without_aclose_lets_go_of_its_topic() -> None:
    hub = Broadcast()
    body = hub.subscribe("t", heartbeat=15.0)
    await anext(body)
    assert hub.subscribers == 1
    del body
    gc.collect()
    await asyncio.sleep(0)  # let go of on the next loop turn, as a generator would be
    assert hub.subscribers == 0
    await hub.publish("t", "nobody")  # no waiter left behind to wake


async def test_after_the_last_chunk_it_stays_ended(metrics: InMemoryMetrics) -> None:
    hub = Broadcast()
    body = hub.subscribe("t", heartbeat=15.0)
    await anext(body)
    await hub.publish("t", "last")
    closing = asyncio.ensure_future(hub.close(grace=1.0))
    chunks = [chunk async for chunk in body]
    assert b"data: last" in chunks[0]
    assert b"event: close" in chunks[-1] or b"retry:" in chunks[-1]
    with pytest.raises(StopAsyncIteration):
        await anext(body)
    await closing
    assert metrics.outcomes["broadcast", "", "completed"] == 1
    assert sum(metrics.outcomes.values()) == 1, "ended once"


async def test_a_subscription_closed_before_it_starts_holds_nothing() -> None:
    hub = Broadcast()
    body = hub.subscribe("t", heartbeat=15.0)
    await body.aclose()  # type: ignore[attr-defined]
    assert hub.subscribers == 0
    with pytest.raises(StopAsyncIteration):
        await anext(body)
