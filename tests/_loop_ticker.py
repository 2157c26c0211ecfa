"""`Ticker`: how long the event loop went without giving a task a turn."""

from __future__ import annotations

import asyncio
import time

import pytest


class Ticker:
    """A task that runs whenever the loop lets it and records the longest stretch of
    CPU time (of this thread, so a busy machine's other processes do not count) the
    loop spent elsewhere between two of its turns, and between its last turn and the end
    of the ``async with`` block (so code that never lets the loop run is caught too)."""

    def __init__(self) -> None:
        self.longest = 0.0
        self.turns = 0
        self._last = time.thread_time()
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Ticker:
        self._task = asyncio.create_task(self._run())
        await asyncio.sleep(0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self.longest = max(self.longest, time.thread_time() - self._last)
        self._task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await self._task

    async def _run(self) -> None:
        self._last = time.thread_time()
        while True:
            await asyncio.sleep(0)
            now = time.thread_time()
            self.longest = max(self.longest, now - self._last)
            self.turns += 1
            self._last = now
