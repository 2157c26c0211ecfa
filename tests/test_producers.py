"""The producer side of a Channel: drops only while the consumer is away, a stalled
consumer costs one trip through the loop per `capacity` drops, and after `stall_after`
seconds nothing at all (the source is not pulled until the consumer is back), one
failing source cancels the others, aclose waits for every source's cleanup. Checked
through the channel's consumer API, on a fake clock (`tests._clock`)."""

from __future__ import annotations

import asyncio
import gc
import weakref
from collections.abc import AsyncIterator

import pytest

from streamfx._core.channel import Channel
from tests._clock import FakeClock, fake_clock
from tests._sources import Probe, Upstream, burst, counting, forever, pulled_source, settle


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


async def test_a_channel_closed_early_goes_without_the_cycle_collector() -> None:
    """A cancelled producer task keeps its CancelledError, whose traceback holds the
    producer's frame, which holds the channel: the channel must not hold the task
    after `aclose`, or every stream closed early (its client gone) waits, with all it
    holds, for a full collection (aiohttp churn: some 40 objects a cycle, 11-13 MB
    more RSS before a collection came)."""
    probe = Probe()
    source = forever(probe)
    gone = weakref.ref(source)  # held by the producer's frame, so by the cycle
    channel: Channel[int] = Channel(4, "sliding")
    channel.start([source])
    del source
    await channel.wait_ready()
    gc.collect()
    gc.disable()
    try:
        await channel.aclose()
        assert probe.cleanups == 1
        del channel
        assert gone() is None
    finally:
        gc.enable()


async def test_aclose_returns_after_the_sources_cleanup() -> None:
    probe = Probe()
    channel: Channel[int] = Channel(4, "suspend")
    channel.start([forever(probe)])
    await channel.wait_ready()
    await channel.aclose()
    assert probe.cleanups == 1
    assert channel.done


# -- stall_after: a consumer away that long stops the source being pulled ------------


async def stalled_channel(
    strategy: str, stall_after: float | None, capacity: int = 4
) -> tuple[Channel[int], Upstream, list[int]]:
    """A channel on an `Upstream` whose consumer took item 0 and is then away for good
    (blocked in a write), with the queue full and `capacity` + 2 items dropped."""
    upstream = Upstream()
    dropped: list[int] = []
    channel: Channel[int] = Channel(
        capacity,
        strategy,  # type: ignore[arg-type]
        dropped.append,
        stall_after=stall_after,
    )
    channel.start([upstream.source()])
    await upstream.publish(1)
    assert await channel.wait_ready()
    assert channel.take_all() == [0]
    await upstream.publish(2 * capacity + 2)
    assert upstream.pulled == list(range(upstream.published)), "pulled as published"
    assert channel.dropped == capacity + 2
    return channel, upstream, dropped


async def take_until(channel: Channel[int], last: int) -> list[int]:
    """What a consumer that keeps up receives, up to item `last`."""
    received: list[int] = []
    while not received or received[-1] < last:
        assert await channel.wait_ready()
        received += channel.take_all()
    return received


@pytest.mark.parametrize("strategy", ["sliding", "dropping"])
async def test_a_stalled_consumer_stops_its_source_being_pulled(
    strategy: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = fake_clock(monkeypatch)
    channel, upstream, dropped = await stalled_channel(strategy, stall_after=1.0)
    held = [7, 8, 9, 10] if strategy == "sliding" else [1, 2, 3, 4]
    clock.advance(0.999)
    await upstream.publish(1)  # not yet: still pulled and dropped
    assert upstream.pulled == list(range(12))
    held = [8, 9, 10, 11] if strategy == "sliding" else held
    clock.advance(0.001)
    await settle()  # the watch looks: the consumer is still away
    await upstream.publish(1)  # pulled (it is held in hand), and the producer pauses
    await upstream.publish(50)
    assert upstream.pulled == list(range(13)), "nothing pulled while the consumer is away"
    assert upstream.queue.qsize() == 50, "what the source would produce stays upstream"
    assert channel.dropped == len(dropped) == 7, "the pause dropped nothing"

    # The consumer comes back: what was held, in order, then the item pulled as it
    # paused, then what the source yields next; nothing more is dropped.
    received = channel.take_all()
    assert received == held
    received += await take_until(channel, upstream.published - 1)
    assert received == [*held, *range(12, upstream.published)]
    assert channel.dropped == 7
    await channel.aclose()


@pytest.mark.parametrize("strategy", ["sliding", "dropping"])
async def test_a_consumer_away_stall_after_before_the_queue_fills_costs_no_drop(
    strategy: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The stall clock counts from when the consumer left, not from the first drop: a
    stalled client whose buffer took longer than `stall_after` to fill (a slow
    publisher) has its producer paused at the first item that would be dropped."""
    clock = fake_clock(monkeypatch)
    upstream = Upstream()
    dropped: list[int] = []
    channel: Channel[int] = Channel(
        4,
        strategy,  # type: ignore[arg-type]
        dropped.append,
        stall_after=1.0,
    )
    channel.start([upstream.source()])
    await upstream.publish(1)
    assert await channel.wait_ready()
    assert channel.take_all() == [0]  # and away, for good
    clock.advance(0.6)
    await upstream.publish(2)
    clock.advance(0.4)  # away 1 s, the queue not full yet
    await upstream.publish(2)  # fills the queue
    await upstream.publish(1)  # would be dropped: held in hand, the producer paused
    await upstream.publish(10)
    assert upstream.pulled == list(range(6)), "nothing pulled past the item in hand"
    assert dropped == [] and channel.dropped == 0, "the pause dropped nothing"
    assert channel.take_all() == [1, 2, 3, 4]
    assert await take_until(channel, upstream.published - 1) == list(
        range(5, upstream.published)
    ), "back: the item in hand, then the source again, in order"
    assert dropped == []
    await channel.aclose()


async def test_a_consumer_back_within_stall_after_starts_the_clock_anew(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each take is the consumer coming back: only `stall_after` seconds away in one go
    pause the producer (the watch scheduled for the first stall looks again later)."""
    clock = fake_clock(monkeypatch)
    channel, upstream, _ = await stalled_channel("sliding", stall_after=1.0)
    clock.advance(0.6)
    assert channel.take_all() == [7, 8, 9, 10]  # back, and away again at once
    await upstream.publish(6)  # refills the queue, then drops: the clock starts again
    clock.advance(0.6)  # 1.2 s since it first left, 0.6 since it last took
    await upstream.publish(3)
    assert upstream.pulled == list(range(upstream.published)), "still pulled"
    clock.advance(0.4)
    await settle()
    await upstream.publish(3)
    assert len(upstream.pulled) == upstream.published - 2, "paused at the next pull"
    await channel.aclose()


async def test_a_long_run_of_drops_keeps_its_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """The producer's turns through the loop (one per `capacity` drops) do not end the
    run: the clock started when the consumer left still counts."""
    clock = fake_clock(monkeypatch)
    channel, upstream, _ = await stalled_channel("sliding", stall_after=1.0)
    clock.advance(0.5)
    await upstream.publish(20)  # five turns through the loop for a capacity of 4
    assert upstream.pulled == list(range(upstream.published))
    clock.advance(0.5)
    await settle()
    await upstream.publish(5)
    assert len(upstream.pulled) == upstream.published - 4, "paused 1 s after it left"
    await channel.aclose()


async def test_without_stall_after_a_stalled_consumer_is_drained_for_good(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = fake_clock(monkeypatch)
    channel, upstream, dropped = await stalled_channel("sliding", stall_after=None)
    clock.advance(3600.0)
    await upstream.publish(50)
    assert upstream.pulled == list(range(upstream.published))
    assert channel.take_all() == list(range(upstream.published - 4, upstream.published))
    assert len(dropped) == upstream.published - 5
    await channel.aclose()


async def test_a_paused_channel_closes_its_source_and_forgets_its_watch(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock: FakeClock = fake_clock(monkeypatch)
    closed = asyncio.Event()
    upstream = Upstream()

    async def source() -> AsyncIterator[int]:
        try:
            async for item in upstream.source():
                yield item
        finally:
            closed.set()

    channel: Channel[int] = Channel(2, "sliding", stall_after=1.0)
    channel.start([source()])
    await upstream.publish(1)
    await channel.wait_ready()
    channel.take_all()
    await upstream.publish(4)
    clock.advance(1.0)
    await settle()
    await upstream.publish(2)
    assert len(upstream.pulled) == 6, "paused"
    await channel.aclose()
    assert closed.is_set()
    watch = channel._stall_watch
    assert watch is not None
    assert not watch.queued or watch.cancelled


async def test_stall_after_changes_nothing_for_suspend(monkeypatch: pytest.MonkeyPatch) -> None:
    """A suspend producer waits for room whatever `stall_after` says, and loses nothing."""
    clock = fake_clock(monkeypatch)
    pulled: list[int] = []
    channel: Channel[int] = Channel(2, "suspend", stall_after=1.0)
    channel.start([pulled_source(pulled)])
    assert await channel.wait_ready()
    received = channel.take_all()  # then away: the producer waits for room
    await settle()
    waiting = list(pulled)
    clock.advance(10.0)
    await settle()
    assert pulled == waiting
    received += await take_until(channel, 20)
    assert received == list(range(len(received)))
    assert channel.dropped == 0
    await channel.aclose()
