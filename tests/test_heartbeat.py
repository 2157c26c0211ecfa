from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest

import streamfx
from tests._sources import Probe, counting, forever, settle


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


async def test_idle_heartbeat_streams_share_one_loop_timer_and_each_still_beats() -> None:
    """Issue 15: a timer per wait costs a `TimerHandle` and a context per idle stream;
    the silences of idle `heartbeat` streams share the loop's one timer instead, each
    still gets its beat, and closed streams leave no timer behind."""
    loop = asyncio.get_running_loop()

    def live_timers() -> int:
        return len([t for t in loop._scheduled if not t.cancelled()])  # type: ignore[attr-defined]

    async def silent() -> AsyncIterator[int]:
        await asyncio.Event().wait()
        yield 0

    before = live_timers()
    streams = [streamfx.heartbeat(silent(), 0.05 + n / 1000, "beat") for n in range(50)]
    waits = [asyncio.ensure_future(anext(stream)) for stream in streams]
    await settle()
    assert live_timers() - before <= 1, "one loop timer for all the idle streams"
    assert await asyncio.gather(*waits) == ["beat"] * 50, "each still gets its beat"
    for stream in streams:
        await stream.aclose()
    assert live_timers() == before, "closed streams hold no timer"
