from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

import streamfx
from tests._clock import fake_clock
from tests._sources import Probe, Upstream, counting, forever, settle


@pytest.mark.parametrize(
    ("capacity", "error"),
    [
        (0, ValueError),
        (-1, ValueError),
        (None, ValueError),
        (float("inf"), ValueError),
        ("unbounded", ValueError),
        (1.5, TypeError),
        ("64", TypeError),
        (True, TypeError),
    ],
)
def test_bad_capacity_is_refused_at_the_call(capacity: Any, error: type[Exception]) -> None:
    probe = Probe()
    source = counting(3, probe)
    with pytest.raises(error, match="capacity"):
        streamfx.buffer(source, capacity)
    assert not probe.started


def test_unknown_strategy_is_refused_at_the_call() -> None:
    with pytest.raises(ValueError, match="strategy"):
        streamfx.buffer(counting(3, Probe()), 4, "fifo")  # type: ignore[arg-type]


@pytest.mark.parametrize("strategy", ["suspend", "sliding", "dropping"])
async def test_fast_consumer_gets_everything_in_order(strategy: streamfx.Strategy) -> None:
    probe = Probe()
    got = [x async for x in streamfx.buffer(counting(500, probe), 8, strategy)]
    assert got == list(range(500))
    assert probe.cleanups == 1


async def test_suspend_is_lossless_and_applies_backpressure() -> None:
    probe = Probe()
    stream = streamfx.buffer(forever(probe), 5, "suspend")
    first = await anext(stream)
    for _ in range(50):  # give the producer every chance to run ahead
        await asyncio.sleep(0)
    # one item is in the consumer's hands, at most `capacity` are buffered
    assert probe.produced == 1 + 5
    got = [first]
    async for item in stream:
        got.append(item)
        if len(got) == 100:
            break
    await stream.aclose()
    assert got == list(range(100))
    assert probe.cleanups == 1


@pytest.mark.parametrize(
    ("strategy", "kept", "dropped"),
    [
        ("sliding", [7, 8, 9], [1, 2, 3, 4, 5, 6]),  # the newest always gets in
        ("dropping", [1, 2, 3], [4, 5, 6, 7, 8, 9]),  # what waits stays
    ],
)
async def test_a_burst_into_a_full_buffer(
    strategy: streamfx.Strategy, kept: list[int], dropped: list[int]
) -> None:
    go, release = asyncio.Event(), asyncio.Event()
    seen_dropped: list[int] = []

    async def burst() -> Any:
        yield 0
        await go.wait()
        for i in range(1, 10):
            yield i
        await release.wait()

    stream = streamfx.buffer(burst(), 3, strategy, on_drop=seen_dropped.append)
    assert await anext(stream) == 0  # the producer starts; 0 is handed over at once
    go.set()  # 1..9 arrive while the consumer is away
    for _ in range(20):
        await asyncio.sleep(0)
    release.set()
    assert [x async for x in stream] == kept
    assert seen_dropped == dropped


@pytest.mark.parametrize("strategy", ["sliding", "dropping"])
async def test_a_burst_into_a_ready_consumer_loses_nothing(strategy: streamfx.Strategy) -> None:
    """The consumer never leaves the channel for anything else, so it is always ready:
    a full buffer makes the producer wait, it does not drop."""
    dropped: list[int] = []

    async def burst() -> Any:
        for i in range(10_000):
            yield i  # never suspends: the whole burst is ready at once

    got = [x async for x in streamfx.buffer(burst(), 64, strategy, on_drop=dropped.append)]
    assert got == list(range(10_000))
    assert dropped == []


async def test_source_error_arrives_after_the_items_before_it() -> None:
    probe = Probe()
    got: list[int] = []
    with pytest.raises(RuntimeError, match="failed at 7"):
        async for item in streamfx.buffer(counting(20, probe, fail_at=7), 4):
            got.append(item)
    assert got == list(range(7))
    assert probe.cleanups == 1


async def test_aclose_cancels_the_producer_and_runs_source_cleanup() -> None:
    probe = Probe()
    stream = streamfx.buffer(forever(probe), 4)
    assert await anext(stream) == 0
    await stream.aclose()
    assert probe.cleanups == 1  # already, when aclose() returns


async def test_leaving_aclosing_runs_source_cleanup() -> None:
    probe = Probe()
    async with contextlib.aclosing(streamfx.buffer(forever(probe), 4)) as stream:
        async for item in stream:
            if item == 10:
                break
    assert probe.cleanups == 1


async def test_cancelling_the_consumer_cancels_the_producer() -> None:
    probe = Probe()
    started = asyncio.Event()

    async def consume() -> None:
        async for _ in streamfx.buffer(slow_forever(probe), 4):
            started.set()

    async def slow_forever(probe: Probe) -> Any:
        try:
            i = 0
            while True:
                yield i
                i += 1
                await asyncio.sleep(10)
        finally:
            probe.cleanups += 1

    task = asyncio.create_task(consume())
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert probe.cleanups == 1


async def test_source_cleanup_that_awaits_completes_before_aclose_returns() -> None:
    log: list[str] = []

    async def source() -> Any:
        try:
            while True:
                yield 1
        finally:
            await asyncio.sleep(0.01)
            log.append("cleaned")

    stream = streamfx.buffer(source(), 2)
    await anext(stream)
    await stream.aclose()
    assert log == ["cleaned"]


async def test_closing_before_iteration_starts_no_task() -> None:
    probe = Probe()
    stream = streamfx.buffer(counting(3, probe), 2)
    await stream.aclose()
    assert not probe.started


async def test_on_drop_error_fails_the_stream() -> None:
    def explode(item: int) -> None:
        raise KeyError(item)

    async def burst() -> Any:
        for i in range(10):
            yield i

    stream = streamfx.buffer(burst(), 1, "dropping", on_drop=explode)
    with pytest.raises(KeyError):
        async for _ in stream:
            await asyncio.sleep(0.001)


async def test_plain_async_iterator_without_aclose_is_accepted() -> None:
    class Countdown:
        def __init__(self) -> None:
            self.n = 3

        def __aiter__(self) -> Countdown:
            return self

        async def __anext__(self) -> int:
            if self.n == 0:
                raise StopAsyncIteration
            self.n -= 1
            return self.n

    assert [x async for x in streamfx.buffer(Countdown(), 2)] == [2, 1, 0]


# -- stall_after -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("stall_after", "error"),
    [
        (0, ValueError),
        (-1.0, ValueError),
        (float("nan"), ValueError),
        (float("inf"), ValueError),
        ("1", TypeError),
        (True, TypeError),
    ],
)
def test_a_bad_stall_after_is_refused_at_the_call(stall_after: Any, error: type[Exception]) -> None:
    probe = Probe()
    with pytest.raises(error, match="stall_after"):
        streamfx.buffer(counting(3, probe), 4, "sliding", stall_after=stall_after)
    assert not probe.started


async def first_item(stream: AsyncIterator[int], upstream: Upstream) -> int:
    """Start `stream` on `upstream`: publish item 0 and take it."""
    taken = asyncio.ensure_future(anext(stream))
    await upstream.publish(1)
    return await taken


@pytest.mark.parametrize("strategy", ["sliding", "dropping"])
async def test_a_stalled_consumer_pauses_the_source_and_loses_nothing_held(
    strategy: streamfx.Strategy, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = fake_clock(monkeypatch)
    upstream = Upstream()
    dropped: list[int] = []
    stream = streamfx.buffer(
        upstream.source(), 2, strategy, on_drop=dropped.append, stall_after=1.0
    )
    assert await first_item(stream, upstream) == 0  # then the consumer is away
    await upstream.publish(4)  # 1 and 2 fill the buffer; two drops
    clock.advance(1.0)
    await settle()
    await upstream.publish(10)  # 5 is pulled and kept in hand; the rest stays upstream
    assert upstream.pulled == list(range(6))
    assert upstream.queue.qsize() == 9
    held = [3, 4] if strategy == "sliding" else [1, 2]
    assert dropped == ([1, 2] if strategy == "sliding" else [3, 4])
    # Back: the held items in order, the one in hand, then the source again.
    received = [await anext(stream) for _ in range(12)]
    assert received == [*held, *range(5, 15)]
    assert len(dropped) == 2
    await stream.aclose()


async def test_a_consumer_that_keeps_coming_back_is_never_paused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A slow consumer, not a stalled one: each item it takes starts the clock anew, so
    the buffer keeps pulling and dropping (the newest kept) however long it lasts."""
    clock = fake_clock(monkeypatch)
    upstream = Upstream()
    stream = streamfx.buffer(upstream.source(), 2, "sliding", stall_after=1.0)
    await first_item(stream, upstream)
    await upstream.publish(4)
    for _ in range(5):
        clock.advance(0.6)
        await settle()
        await anext(stream)  # back for one item, and away again
        await upstream.publish(3)
        assert upstream.pulled == list(range(upstream.published)), "never paused"
    await stream.aclose()


async def test_without_stall_after_the_buffer_drains_a_stalled_consumer_s_source(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The default of `buffer`: the classic sliding buffer, always pulling."""
    clock = fake_clock(monkeypatch)
    upstream = Upstream()
    stream = streamfx.buffer(upstream.source(), 2, "sliding")
    await first_item(stream, upstream)
    await upstream.publish(4)
    clock.advance(3600.0)
    await settle()
    await upstream.publish(10)
    assert upstream.pulled == list(range(15))
    assert [await anext(stream) for _ in range(2)] == [13, 14]
    await stream.aclose()
