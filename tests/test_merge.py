from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

import streamfx
from tests._sources import Probe, counting, forever


async def test_items_from_all_sources_each_in_order() -> None:
    a, b = Probe(), Probe()
    got = [x async for x in streamfx.merge(counting(50, a), counting(30, b))]
    assert sorted(got) == sorted(list(range(50)) + list(range(30)))
    assert [x for x in got if x >= 30] == list(range(30, 50))
    assert a.cleanups == b.cleanups == 1


async def test_items_interleave_as_they_arrive() -> None:
    async def tagged(tag: str, delay: float, n: int) -> AsyncIterator[str]:
        for i in range(n):
            await asyncio.sleep(delay)
            yield f"{tag}{i}"

    got = [x async for x in streamfx.merge(tagged("slow", 0.03, 2), tagged("fast", 0.001, 3))]
    assert got.index("fast2") < got.index("slow0")


async def test_an_error_in_one_cancels_the_others_and_runs_their_cleanup() -> None:
    healthy = Probe()
    with pytest.raises(RuntimeError, match="failed at 5"):
        async for _ in streamfx.merge(forever(healthy), counting(10, Probe(), fail_at=5)):
            pass
    assert healthy.cleanups == 1


async def test_closing_early_cleans_up_every_source() -> None:
    probes = [Probe() for _ in range(3)]
    stream = streamfx.merge(*(forever(p) for p in probes))
    async for item in stream:
        if item > 20:
            break
    await stream.aclose()
    assert [p.cleanups for p in probes] == [1, 1, 1]


async def test_no_sources_ends_at_once() -> None:
    none: list[AsyncIterator[int]] = []
    empty = [x async for x in streamfx.merge(*none)]
    assert empty == []
