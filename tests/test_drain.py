"""drain: a channel handed out one item at a time (what buffer, merge and heartbeat
return), checked against the promises of its module docstring."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from streamfx._core.channel import Channel
from streamfx._core.drain import drain
from tests._sources import Probe, burst, counting, pulled_source, settle


async def test_drain_yields_items_then_raises_the_error() -> None:
    channel: Channel[int] = Channel(2, "suspend")
    got: list[int] = []
    with pytest.raises(RuntimeError, match="failed at 5"):
        async for item in drain(channel, [counting(9, Probe(), fail_at=5)], "test"):
            got.append(item)
    assert got == [0, 1, 2, 3, 4]


async def test_drain_with_an_interval_fills_silences_with_beats() -> None:
    resume = asyncio.Event()

    async def source() -> AsyncIterator[int]:
        yield 1
        await resume.wait()
        yield 2

    channel: Channel[int] = Channel(1, "suspend")
    got: list[int | str] = []
    async for item in drain(channel, [source()], "test", interval=0.01, beat=lambda: "beat"):
        got.append(item)
        if got.count("beat") == 2:
            resume.set()
    assert got == [1, "beat", "beat", 2]


async def test_an_item_counts_against_the_capacity_until_it_is_handed_out() -> None:
    """The producer stays `capacity` items ahead of the item the consumer has just
    received, item by item, while the consumer is away with each one (the batch it was
    handed out from is released an item at a time, not all at the end)."""
    pulled: list[int] = []
    channel: Channel[int] = Channel(4, "suspend", compact=False)
    stream = drain(channel, [pulled_source(pulled)], "test")
    for received in range(1, 12):
        assert await anext(stream) == received - 1
        await settle()  # the consumer is away: the producer runs as far as it may
        assert len(pulled) == received + 4
    await stream.aclose()


@pytest.mark.parametrize("strategy", ["suspend", "sliding", "dropping"])
async def test_a_burst_into_a_ready_consumer_loses_nothing_and_keeps_order(
    strategy: str,
) -> None:
    channel: Channel[int] = Channel(3, strategy, compact=False)  # type: ignore[arg-type]
    got = [item async for item in drain(channel, [burst(1000, pauses={500})], "test")]
    assert got == list(range(1000))
    assert channel.dropped == 0
