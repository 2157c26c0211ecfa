"""drain: a channel handed out one item at a time (what buffer, merge and heartbeat
return), checked against the promises of its module docstring."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from streamfx._core.channel import Channel
from streamfx._core.drain import drain
from tests._sources import Probe, counting


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
