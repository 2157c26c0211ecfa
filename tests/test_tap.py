from __future__ import annotations

import pytest

import streamfx
from tests._sources import Probe, counting, forever


async def test_sync_fn_sees_every_item_and_items_pass_unchanged() -> None:
    seen: list[int] = []
    got = [x async for x in streamfx.tap(counting(5, Probe()), seen.append)]
    assert got == seen == [0, 1, 2, 3, 4]


async def test_async_fn_is_awaited_in_order_before_the_item_passes() -> None:
    seen: list[int] = []

    async def record(item: int) -> None:
        seen.append(item)

    got = []
    async for item in streamfx.tap(counting(5, Probe()), record):
        assert seen[-1] == item
        got.append(item)
    assert got == seen == [0, 1, 2, 3, 4]


async def test_an_error_in_fn_stops_the_stream_and_closes_the_source() -> None:
    probe = Probe()

    def check(item: int) -> None:
        if item == 3:
            raise ValueError("bad item")

    with pytest.raises(ValueError, match="bad item"):
        async for _ in streamfx.tap(forever(probe), check):
            pass
    assert probe.cleanups == 1


async def test_closing_early_closes_the_source() -> None:
    probe = Probe()
    stream = streamfx.tap(forever(probe), lambda _: None)
    await anext(stream)
    await stream.aclose()
    assert probe.cleanups == 1


def test_non_callable_is_refused() -> None:
    with pytest.raises(TypeError, match="callable"):
        streamfx.tap(counting(1, Probe()), 42)  # type: ignore[arg-type]
