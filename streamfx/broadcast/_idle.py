"""`Idle`: how one subscriber waits for news without a task or a timer of its own.

A waiting subscriber puts its `Waiter` (one per subscriber, re-armed for each wait:
nothing is made per wait, see `streamfx.broadcast._waiter`) in the waiter set of each
of its topics' logs; a publish resolves the waiters it finds there (True) and clears
the set. The heartbeat is a lazy deadline in the loop's shared heap
(`streamfx._core.deadlines`: one loop timer for every subscriber, not one
`TimerHandle` each). It is *not* moved on every write: the subscriber only notes
when its silence would become due (`wrote`), and when the old deadline comes first
it simply schedules itself for the new due time.
So a busy subscriber costs one heap push per heartbeat interval, not one per event.

Promises: `wait` (or `waiting` or `block` ... `waited`) returns True when woken
(news, or the hub closing or its backend's health changing: `wake`), False when
`interval` seconds passed since the last `wrote` while it waited; a cancelled wait
leaves nothing registered once `waited` ran; `close` takes its deadline out of the
heap.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from streamfx._core.deadlines import Deadline, Deadlines, deadlines_for
from streamfx.broadcast._log import TopicLog
from streamfx.broadcast._waiter import Waiter

__all__ = ["Idle"]


class Idle(Deadline):
    """One subscriber's waiting: see the module docstring."""

    __slots__ = ("deadlines", "due", "interval", "logs", "loop", "waiter")

    def __init__(self, logs: Sequence[TopicLog], interval: float | None) -> None:
        """`logs`: the subscriber's topics (the very sequence it keeps: nothing copied
        per subscriber), whose waiter sets a wait joins."""
        super().__init__()
        self.loop = loop = asyncio.get_running_loop()
        self.logs = logs
        self.interval = interval
        self.waiter = Waiter(loop)
        self.due = 0.0
        self.deadlines: Deadlines | None = None
        if interval is not None:
            self.due = loop.time() + interval
            self.deadlines = deadlines = deadlines_for(loop)
            deadlines.schedule(self, self.due)

    def wrote(self) -> None:
        """Something was written: the silence starts again."""
        if self.interval is not None:
            self.due = self.loop.time() + self.interval

    def waiting(self) -> Waiter:
        """Start waiting: the waiter, armed, is put in each topic's waiter set and
        resolved as `wait` returns. The caller awaits it and then calls `waited`
        however the await ends (in a ``finally``). A `Subscription` hands the waiter to
        its task itself: a coroutine per wait would hold a frame per idle subscriber."""
        waiter = self.waiter.arm()
        for log in self.logs:
            log.waiters.add(waiter)
        return waiter

    def block(self) -> Waiter:
        """`waiting` for a task that yields the waiter at once (`Waiter.block`): what a
        `Subscription` hands its task, then `waited` when the task is back."""
        waiter = self.waiter.block()
        for log in self.logs:
            log.waiters.add(waiter)
        return waiter

    def waited(self) -> bool:
        """Stop waiting: the waiter leaves every waiter set and is disarmed. Returns
        True if it was woken (`wake` or news), False otherwise (the heartbeat is due,
        or the wait was cancelled)."""
        waiter = self.waiter
        for log in self.logs:
            log.waiters.discard(waiter)
        return waiter.disarm()

    async def wait(self) -> bool:
        """`waiting` and `waited` around one await."""
        try:
            return await self.waiting()
        finally:
            self.waited()

    def wake(self) -> None:
        self.waiter.set(True)

    def close(self) -> None:
        if self.deadlines is not None:
            self.deadlines.cancel(self)
            self.deadlines = None

    def expired(self, now: float) -> None:
        assert self.interval is not None
        assert self.deadlines is not None
        if now >= self.due:
            self.waiter.set(False)
            self.due = now + self.interval
        self.deadlines.schedule(self, self.due)
