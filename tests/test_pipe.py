from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiostream import pipe, stream

import streamfx
import streamfx.pipe as sfpipe
from tests._clock import fake_clock
from tests._sources import Upstream, settle


async def test_buffer_composes_with_aiostream_operators() -> None:
    def double(x: int) -> int:
        return x * 2

    xs = stream.iterate(range(10)) | sfpipe.buffer(64, "sliding") | pipe.map(double)  # type: ignore[arg-type]  # aiostream's map wants *args
    assert await stream.list(xs) == [x * 2 for x in range(10)]  # type: ignore[arg-type]


async def test_every_operator_works_in_a_pipeline() -> None:
    seen: list[int] = []
    finalized: list[bool] = []
    reports: list[streamfx.Progress] = []
    breaker = streamfx.CircuitBreaker()
    xs = (
        stream.iterate(range(5))
        | sfpipe.merge(stream.iterate(range(100, 103)))
        | sfpipe.tap(seen.append)
        | sfpipe.heartbeat(5.0, -1)
        | sfpipe.circuit(breaker)
        | sfpipe.progress(reports.append)
        | sfpipe.ensuring(lambda: finalized.append(True))
    )
    result: Any = await stream.list(xs)  # type: ignore[arg-type]
    got: list[int] = result
    assert sorted(got) == [0, 1, 2, 3, 4, 100, 101, 102]
    assert sorted(seen) == sorted(got)
    assert finalized == [True]
    assert reports[-1].count == 8


def test_pipe_buffer_checks_its_arguments_at_the_call() -> None:
    with pytest.raises(ValueError, match="capacity"):
        sfpipe.buffer(0)


@pytest.mark.parametrize(("stall_after", "error"), [(0, ValueError), ("1", TypeError)])
def test_pipe_buffer_checks_stall_after_at_the_call(
    stall_after: Any, error: type[Exception]
) -> None:
    with pytest.raises(error, match="stall_after"):
        sfpipe.buffer(4, "sliding", stall_after=stall_after)


async def test_pipe_buffer_passes_stall_after_on(monkeypatch: pytest.MonkeyPatch) -> None:
    """The consumer takes the first item and stays away: the buffer fills, drops, and
    `stall_after` later stops pulling the source."""
    clock = fake_clock(monkeypatch)
    upstream = Upstream()
    piped = stream.iterate(upstream.source()) | sfpipe.buffer(2, "sliding", stall_after=1.0)
    async with piped.stream() as items:
        taken = asyncio.ensure_future(anext(items))
        await upstream.publish(1)
        assert await taken == 0
        await upstream.publish(4)
        clock.advance(1.0)
        await settle()
        await upstream.publish(5)
        assert upstream.pulled == list(range(6)), "paused after the item in hand"
        assert [await anext(items) for _ in range(3)] == [3, 4, 5]
