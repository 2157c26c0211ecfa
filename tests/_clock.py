"""A fake clock for the running event loop: ``loop.time()`` moves only when the test
calls `FakeClock.advance`, so a deadline (`streamfx._core.deadlines`, a ``call_at``)
fires at the first loop iteration after the test has moved the time past it, and never
because the machine was slow."""

from __future__ import annotations

import asyncio

import pytest


class FakeClock:
    """The time of one event loop, moved only by `advance`."""

    def __init__(self, start: float) -> None:
        self.now = start

    def time(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def fake_clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    """Give the running loop a `FakeClock` (until the test ends)."""
    loop = asyncio.get_running_loop()
    clock = FakeClock(loop.time())
    monkeypatch.setattr(loop, "time", clock.time)
    return clock


def install_fake_clock(loop: asyncio.AbstractEventLoop) -> FakeClock:
    """Give `loop` a `FakeClock` for the rest of its life (a loop made for one run,
    as by ``asyncio.run`` in a property test)."""
    clock = FakeClock(loop.time())
    loop.time = clock.time  # type: ignore[method-assign]
    return clock
