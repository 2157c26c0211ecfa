"""`Idle`: how one subscriber waits for news without a task or a timer per wait.

A waiting subscriber puts one future in the waiter set of each of its topics' logs;
a publish resolves the futures it finds there (True) and clears the set. The
heartbeat is one timer per subscriber that is *not* re-armed on every write: the
subscriber only notes when its silence would become due (`wrote`), and when the timer
fires early it simply re-arms itself for the new due time. So a busy subscriber costs
one timer callback per heartbeat interval, not one per event.

Promises: `wait` returns True when woken (news, or the hub closing or its backend's
health changing: `wake`), False when `interval` seconds passed since the last
`wrote` while it waited; a cancelled `wait` leaves nothing registered; `close` stops
the timer.
"""

from __future__ import annotations

import asyncio

__all__ = ["Idle"]


class Idle:
    """One subscriber's waiting: see the module docstring."""

    __slots__ = ("due", "interval", "loop", "sets", "timer", "waiter")

    def __init__(self, sets: list[set[asyncio.Future[bool]]], interval: float | None) -> None:
        self.loop = asyncio.get_running_loop()
        self.sets = sets
        self.interval = interval
        self.waiter: asyncio.Future[bool] | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.due = 0.0
        if interval is not None:
            self.due = self.loop.time() + interval
            self.timer = self.loop.call_at(self.due, self._fire)

    def wrote(self) -> None:
        """Something was written: the silence starts again."""
        if self.interval is not None:
            self.due = self.loop.time() + self.interval

    async def wait(self) -> bool:
        waiter: asyncio.Future[bool] = self.loop.create_future()
        self.waiter = waiter
        for waiters in self.sets:
            waiters.add(waiter)
        try:
            return await waiter
        finally:
            self.waiter = None
            for waiters in self.sets:
                waiters.discard(waiter)

    def wake(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(True)

    def close(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _fire(self) -> None:
        assert self.interval is not None
        now = self.loop.time()
        if now >= self.due:
            waiter = self.waiter
            if waiter is not None and not waiter.done():
                waiter.set_result(False)
            self.due = now + self.interval
        self.timer = self.loop.call_at(self.due, self._fire)
