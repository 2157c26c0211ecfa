"""Channel: the consumer API (take_all / release / take_one / wait_ready / raise_if_failed /
done) and the promises of the module docstring, checked through that API only."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from streamfx._core.channel import Channel
from tests._sources import Probe, burst, counting, forever


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


async def test_take_all_returns_every_ready_item_in_order_and_empty_when_none() -> None:
    channel: Channel[int] = Channel(8, "suspend")
    channel.start([counting(5, Probe())])
    got: list[int] = []
    while True:
        await channel.wait_ready()
        batch = channel.take_all()
        channel.release()
        if not batch and channel.done:
            break
        got += batch
    assert got == [0, 1, 2, 3, 4]
    assert channel.take_all() == []
    await channel.aclose()


async def test_a_suspend_batch_counts_against_the_capacity_until_released() -> None:
    pulled: list[int] = []
    channel: Channel[int] = Channel(4, "suspend")
    channel.start([pulled_source(pulled)])
    await settle()
    assert pulled == [0, 1, 2, 3]  # full: the producer waits before pulling again
    batch = channel.take_all()
    assert batch == [0, 1, 2, 3]
    await settle()
    assert pulled == [0, 1, 2, 3], "the batch still counts: no room yet"
    channel.release()
    await settle()
    assert pulled == [0, 1, 2, 3, 4, 5, 6, 7]
    await channel.aclose()


async def test_a_partial_suspend_batch_counts_too() -> None:
    """The producer is busy in its source (not waiting for room) when the batch is
    taken: it may then fill only what the batch leaves free."""
    pulled: list[int] = []
    gate = asyncio.Event()
    channel: Channel[int] = Channel(4, "suspend")
    channel.start([pulled_source(pulled, gate)])
    await settle()
    assert channel.take_all() == [0]
    gate.set()
    await settle()
    assert pulled == [0, 1, 2, 3], "1 held + 3 waiting = the capacity"
    channel.release()
    await settle()
    assert pulled == [0, 1, 2, 3, 4]
    await channel.aclose()


async def test_a_lossy_batch_leaves_at_once() -> None:
    pulled: list[int] = []
    channel: Channel[int] = Channel(2, "dropping")
    channel.start([pulled_source(pulled)])
    await channel.wait_ready()
    batch = channel.take_all()
    await settle()  # the consumer is away: the producer refills, then drops
    assert batch + channel.take_all() == [0, 1, 2, 3]
    await channel.aclose()


@pytest.mark.parametrize("strategy", ["sliding", "dropping"])
async def test_a_lossy_producer_waits_while_the_consumer_waits(strategy: str) -> None:
    dropped: list[int] = []
    pulled: list[int] = []
    channel: Channel[int] = Channel(2, strategy, dropped.append)  # type: ignore[arg-type]
    channel.start([pulled_source(pulled)])
    assert await channel.wait_ready()  # ready: woken by item 0, then 1 and 2 came
    assert channel.take_all() == [0, 1]
    assert dropped == []
    await settle()  # now the consumer is away
    assert dropped != []
    await channel.aclose()


@pytest.mark.parametrize("strategy", ["sliding", "dropping"])
async def test_a_consumer_away_costs_one_trip_through_the_loop_per_capacity_drops(
    strategy: str,
) -> None:
    """A stalled client: its consumer is away for good while the source bursts. The
    producer drops (keeping the newest with "sliding"), and lets the loop run once per
    `capacity` drops in a row, not once per drop (issue 15, item 10: each stalled stream
    cost every healthy one a trip through the loop per published item)."""
    capacity, count = 8, 4000
    dropped: list[int] = []
    finished = asyncio.Event()
    channel: Channel[int] = Channel(capacity, strategy, dropped.append)  # type: ignore[arg-type]
    channel.start([burst(count, pauses={1}, finished=finished)])
    await channel.wait_ready()
    assert channel.take_all() == [0]  # then the consumer is away (blocked in a write)
    turns = 0
    while not finished.is_set():  # another task's turns while the producer drops
        turns += 1
        await asyncio.sleep(0)
    kept = channel.take_all()
    assert sorted(kept + dropped) == list(range(1, count))
    assert kept == (
        list(range(count - capacity, count)) if strategy == "sliding" else list(range(1, 9))
    )
    assert channel.dropped == len(dropped) == count - 1 - capacity
    assert turns <= count // capacity + 2, turns
    await channel.aclose()


async def test_wait_ready_is_true_when_the_producers_are_done() -> None:
    channel: Channel[int] = Channel(4, "suspend")
    channel.start([counting(0, Probe())])
    assert await channel.wait_ready()
    assert channel.done
    assert channel.take_all() == []
    await channel.aclose()


async def test_wait_ready_interval_counts_from_when_the_consumer_came_back() -> None:
    resume = asyncio.Event()

    async def one_then_silence() -> AsyncIterator[str]:
        yield "a"
        await resume.wait()
        yield "b"

    channel: Channel[str] = Channel(4, "suspend")
    channel.start([one_then_silence()])
    assert await channel.wait_ready(0.01)
    assert channel.take_all() == ["a"]
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert not await channel.wait_ready(0.01)  # silence for one interval
    assert loop.time() - started >= 0.01
    started = loop.time()
    assert not await channel.wait_ready(0.01)  # and again, a whole interval later
    assert loop.time() - started >= 0.01
    resume.set()
    assert await channel.wait_ready(5)
    assert channel.take_all() == ["b"]
    await channel.aclose()


async def test_wake_makes_wait_ready_return_with_nothing_ready() -> None:
    channel: Channel[int] = Channel(4, "suspend")
    channel.start([forever_silent()])
    waiter = asyncio.create_task(channel.wait_ready())
    await settle()
    assert not waiter.done()
    channel.wake()
    assert await waiter
    assert channel.take_all() == []
    await channel.aclose()


async def forever_silent() -> AsyncIterator[int]:
    await asyncio.Event().wait()
    yield 0


async def test_the_error_comes_after_the_items_before_it() -> None:
    probe = Probe()
    channel: Channel[int] = Channel(16, "suspend")
    channel.start([counting(10, probe, fail_at=3)])
    got: list[int] = []
    while not channel.done:
        await channel.wait_ready()
        got += channel.take_all()
    assert got + channel.take_all() == [0, 1, 2]
    with pytest.raises(RuntimeError, match="failed at 3"):
        channel.raise_if_failed()
    assert probe.cleanups == 1
    await channel.aclose()


async def test_one_failing_source_cancels_the_others() -> None:
    healthy = Probe()
    channel: Channel[int] = Channel(4, "suspend")
    channel.start([forever(healthy), counting(10, Probe(), fail_at=2)])
    while not channel.done:
        channel.take_all()
        await channel.wait_ready()
    with pytest.raises(RuntimeError):
        channel.raise_if_failed()
    assert healthy.cleanups == 1


async def test_aclose_returns_after_the_sources_cleanup() -> None:
    probe = Probe()
    channel: Channel[int] = Channel(4, "suspend")
    channel.start([forever(probe)])
    await channel.wait_ready()
    await channel.aclose()
    assert probe.cleanups == 1
    assert channel.done
