"""The producer side of a Channel: drops only while the consumer is away, a stalled
consumer costs one trip through the loop per `capacity` drops, one failing source
cancels the others, aclose waits for every source's cleanup. Checked through the
channel's consumer API."""

from __future__ import annotations

import asyncio

import pytest

from streamfx._core.channel import Channel
from tests._sources import Probe, burst, counting, forever, pulled_source, settle


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


async def test_aclose_returns_after_the_sources_cleanup() -> None:
    probe = Probe()
    channel: Channel[int] = Channel(4, "suspend")
    channel.start([forever(probe)])
    await channel.wait_ready()
    await channel.aclose()
    assert probe.cleanups == 1
    assert channel.done
