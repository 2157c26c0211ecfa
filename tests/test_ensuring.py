from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest

import streamfx
from tests._sources import Probe, counting, forever


class Counter:
    def __init__(self) -> None:
        self.calls = 0

    def __call__(self) -> None:
        self.calls += 1


async def test_runs_once_on_exhaustion() -> None:
    fin = Counter()
    assert [x async for x in streamfx.ensuring(counting(3, Probe()), fin)] == [0, 1, 2]
    assert fin.calls == 1


async def test_runs_once_on_error() -> None:
    fin = Counter()
    with pytest.raises(RuntimeError):
        async for _ in streamfx.ensuring(counting(9, Probe(), fail_at=2), fin):
            pass
    assert fin.calls == 1


async def test_runs_once_on_early_close_after_the_source_is_closed() -> None:
    probe = Probe()
    order: list[str] = []
    stream = streamfx.ensuring(
        forever(probe), lambda: order.append(f"fin after {probe.cleanups} cleanups")
    )
    await anext(stream)
    await stream.aclose()
    await stream.aclose()
    assert order == ["fin after 1 cleanups"]


async def test_runs_once_when_closed_before_the_first_item() -> None:
    fin = Counter()
    stream = streamfx.ensuring(counting(3, Probe()), fin)
    await stream.aclose()
    await stream.aclose()
    assert fin.calls == 1


async def test_runs_once_on_cancellation_and_async_finalizers_are_awaited() -> None:
    done = asyncio.Event()
    calls = 0

    async def finalizer() -> None:
        nonlocal calls
        await asyncio.sleep(0)
        calls += 1
        done.set()

    started = asyncio.Event()

    async def slow() -> AsyncIterator[int]:
        yield 1
        await asyncio.sleep(10)
        yield 2

    async def consume() -> None:
        # cancelled while waiting for the next item, inside the stream
        async for _ in streamfx.ensuring(slow(), finalizer):
            started.set()

    task = asyncio.create_task(consume())
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert done.is_set()
    assert calls == 1


async def test_runs_once_when_leaving_aclosing() -> None:
    fin = Counter()
    async with contextlib.aclosing(streamfx.ensuring(forever(Probe()), fin)) as stream:
        async for item in stream:
            if item == 2:
                break
    assert fin.calls == 1


async def test_nested_ensurings_run_inner_first() -> None:
    order: list[str] = []
    inner = streamfx.ensuring(counting(2, Probe()), lambda: order.append("inner"))
    outer = streamfx.ensuring(inner, lambda: order.append("outer"))
    assert [x async for x in outer] == [0, 1]
    assert order == ["inner", "outer"]
