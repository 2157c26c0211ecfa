from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest

import streamfx
from tests._sources import Probe, counting, forever


async def test_silence_is_filled_with_beats_and_items_reset_the_timer() -> None:
    resume = asyncio.Event()

    async def source() -> AsyncIterator[str]:
        yield "a"
        await resume.wait()
        yield "b"

    got: list[str] = []
    async for item in streamfx.heartbeat(source(), 0.01, "beat"):
        got.append(item)
        if got.count("beat") == 2:
            resume.set()
    assert got == ["a", "beat", "beat", "b"]


async def test_a_callable_beat_makes_each_beat() -> None:
    resume = asyncio.Event()
    made = 0

    def make() -> int:
        nonlocal made
        made += 1
        return -made

    async def source() -> AsyncIterator[int]:
        await resume.wait()
        yield 1

    got: list[int] = []
    beat: Callable[[], int] = make
    async for item in streamfx.heartbeat(source(), 0.01, beat):
        got.append(item)
        if len(got) == 3:
            resume.set()
    assert got == [-1, -2, -3, 1]


async def test_a_busy_stream_gets_no_beats() -> None:
    items = [x async for x in streamfx.heartbeat(counting(200, Probe(), delay=0.0005), 5.0, -1)]
    assert items == list(range(200))


async def test_errors_pass_through_after_the_items() -> None:
    got: list[int] = []
    with pytest.raises(RuntimeError, match="failed at 3"):
        async for item in streamfx.heartbeat(counting(10, Probe(), fail_at=3), 5.0, -1):
            got.append(item)
    assert got == [0, 1, 2]


async def test_closing_early_cleans_up_the_source() -> None:
    probe = Probe()
    stream = streamfx.heartbeat(forever(probe), 1.0, -1)
    assert await anext(stream) == 0
    await stream.aclose()
    assert probe.cleanups == 1


@pytest.mark.parametrize("interval", [0, -1, float("inf"), None, "1"])
def test_bad_interval_is_refused_at_the_call(interval: object) -> None:
    with pytest.raises(ValueError, match="interval"):
        streamfx.heartbeat(counting(1, Probe()), interval, -1)  # type: ignore[call-overload]
