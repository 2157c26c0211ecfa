"""Channel: the consumer API (take_all / release / take_one / wait_ready / raise_if_failed /
done) and the promises of the module docstring, checked through that API only."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from streamfx._core.channel import Channel
from streamfx._core.policy import Strategy
from tests._sources import Probe, counting, pulled_source, settle


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
    waiter = asyncio.ensure_future(channel.wait_ready())  # an awaitable, not a coroutine
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


async def test_a_hand_out_counts_each_item_until_the_iterator_moves_past_it() -> None:
    pulled: list[int] = []
    channel: Channel[int] = Channel(4, "suspend")
    channel.start([pulled_source(pulled)])
    await settle()
    assert pulled == [0, 1, 2, 3]
    batch = channel.hand_out()
    await settle()
    assert pulled == [0, 1, 2, 3], "nothing taken from the batch yet: no room"
    assert next(batch) == 0
    assert next(batch) == 1
    channel.wake_producers()
    await settle()
    assert pulled == [0, 1, 2, 3, 4, 5], "two taken, two free slots"
    assert list(batch) == [2, 3]
    channel.wake_producers()
    await settle()
    assert pulled == [0, 1, 2, 3, 4, 5, 6, 7]
    await channel.aclose()


async def _gated(gate: asyncio.Event, items: list[int]) -> AsyncIterator[int]:
    for item in items:
        await gate.wait()
        gate.clear()
        yield item


@pytest.mark.parametrize("strategy", ["suspend", "sliding", "dropping"])
async def test_an_idle_consumer_waits_on_the_producers_future_not_a_coroutine(
    strategy: Strategy,
) -> None:
    """Issue 15: an idle stream (the response engine's wait) holds no coroutine of its
    own: `wait_ready` hands back the future a producer resolves when it appends."""
    gate = asyncio.Event()
    channel: Channel[int] = Channel(4, strategy)
    channel.start([_gated(gate, [7])])
    await settle()
    waiting = channel.wait_ready()
    assert isinstance(waiting, asyncio.Future), f"a {type(waiting).__name__} per idle wait"
    gate.set()
    assert await waiting is True
    assert channel.take_all() == [7]
    channel.release()
    assert await channel.wait_ready() is True
    assert channel.done
    await channel.aclose()


async def test_a_cancelled_idle_wait_loses_nothing_and_the_next_wait_sees_the_item() -> None:
    gate = asyncio.Event()
    channel: Channel[int] = Channel(4, "suspend")
    channel.start([_gated(gate, [1, 2])])
    await settle()

    async def consume() -> bool:
        return await channel.wait_ready()

    waiter = asyncio.create_task(consume())
    await settle()
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    gate.set()
    await settle()
    assert await channel.wait_ready() is True
    assert channel.take_all() == [1]
    channel.release()
    gate.set()
    assert await channel.wait_ready() is True
    assert channel.take_all() == [2]
    await channel.aclose()


async def test_a_lossy_consumer_woken_by_an_item_is_ready_until_it_takes() -> None:
    """The promise kept with the future: a lossy producer that fills the queue after
    waking an idle consumer waits for it (it is ready) instead of dropping."""
    gate = asyncio.Event()

    async def burst() -> AsyncIterator[int]:
        await gate.wait()
        for item in range(6):
            yield item

    channel: Channel[int] = Channel(2, "dropping")
    channel.start([burst()])
    await settle()
    waiting = channel.wait_ready()
    gate.set()
    assert await waiting is True
    await settle()
    assert channel.dropped == 0, "the consumer was woken, not gone: nothing dropped"
    got: list[int] = []
    while not (channel.done and not channel.waiting):
        got += channel.take_all()
        await channel.wait_ready()
    assert got == [0, 1, 2, 3, 4, 5]
    await channel.aclose()
