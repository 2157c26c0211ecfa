"""`Deadlines`: one loop timer for every stream's lazy deadline (heartbeats, write timeouts).

Every open stream has deadlines: when its silence calls for a heartbeat, when a chunk
it handed the server has waited too long. One ``loop.call_at`` per stream for each
costs a `TimerHandle`, a copy of the context and (under uvloop) a libuv timer: some
500 bytes per idle stream, held for as long as it is open. Here the streams of one
event loop share a single loop timer instead: each deadline is the object that wants
it (a `Deadline`), kept in one binary heap ordered by its time, and the loop timer is
armed for the earliest only. A deadline costs one slot of that list.

The deadlines are *lazy*: an owner whose deadline moves later (a stream that wrote,
so its silence starts again) does not touch the heap; when its old time comes,
`expired` is called and the owner looks at its own clock and schedules itself again
if it is not due yet. So a busy stream costs one heap push per interval, not one per
chunk (the rule the per-stream timers kept before).

Promises:

- `expired(now)` is called once per `schedule`, as a loop callback, at the first loop
  iteration at or after the time given (never before: ``now >= at``), in the order of
  the times; an owner scheduled again from `expired` is called again at its new time.
- A `Deadline` is in the heap at most once: scheduling one that is already waiting
  keeps its earlier time (its owner re-checks there), and revives it if it was
  cancelled.
- `cancel` forgets a waiting deadline: `expired` is not called for it. Cancelled
  entries are dropped in bulk (when they are most of the heap, or all of it: then
  the loop timer is cancelled too, so a loop whose streams all ended holds no timer
  and no reference to them).
- An `expired` that raises is reported to the loop's exception handler, as a failing
  loop callback is, and the other deadlines are served regardless.
- One ``call_at`` per run of due deadlines at most: owners scheduled again from
  `expired` are pushed on the heap, and the timer is armed once, for the earliest,
  when the run ends (arming it for each and replacing it would leave a cancelled
  handle per run in the loop's heap until its time: on asyncio's loop, some 0.5 per
  idle aiohttp stream, each with a copy of the context).

Hand-written: asyncio offers only one timer per callback, and no library keeps a
shared timer heap for asyncio; this is ``heapq`` and one ``call_at``.
"""

from __future__ import annotations

import asyncio
import heapq
from typing import Final

__all__ = ["Deadline", "Deadlines", "deadlines_for"]

_COMPACT_AFTER: Final = 64
"""Cancelled entries dropped in bulk once there are this many and they are the most."""


class Deadline:
    """Something that wants `expired(now)` called when the loop's time reaches `at`.

    Subclasses set ``__slots__`` and override `expired`; `at` is the time of the
    waiting entry (not to be changed while `queued`)."""

    __slots__ = ("at", "cancelled", "queued")

    def __init__(self) -> None:
        self.at = 0.0
        self.queued = False
        self.cancelled = False

    def __lt__(self, other: Deadline) -> bool:
        return self.at < other.at

    def expired(self, now: float) -> None:
        """Called by `Deadlines` once the loop's time `now` reached `at`."""
        raise NotImplementedError


class Deadlines:
    """The deadlines of one event loop and its one timer (see the module docstring)."""

    __slots__ = ("_cancelled", "_heap", "_running", "_timer", "_timer_at", "loop")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._heap: list[Deadline] = []
        self._cancelled = 0
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0
        # True while `_run` serves the due deadlines: it arms the timer once, at its end
        # (an owner scheduled again from `expired` arms nothing meanwhile).
        self._running = False

    def __len__(self) -> int:
        """Deadlines waiting and not cancelled."""
        return len(self._heap) - self._cancelled

    def schedule(self, item: Deadline, at: float) -> None:
        """Call ``item.expired`` at loop time `at` (see the module docstring)."""
        if item.queued:
            if item.cancelled:
                item.cancelled = False
                self._cancelled -= 1
            return
        item.at = at
        item.queued = True
        heapq.heappush(self._heap, item)
        if not self._running and (self._timer is None or at < self._timer_at):
            self._arm(at)

    def cancel(self, item: Deadline) -> None:
        """Forget `item` if it waits: its `expired` will not be called."""
        if not item.queued or item.cancelled:
            return
        item.cancelled = True
        self._cancelled += 1
        heap = self._heap
        if self._cancelled == len(heap):
            for entry in heap:
                entry.queued = entry.cancelled = False
            heap.clear()
            self._cancelled = 0
            self._disarm()
        elif self._cancelled >= _COMPACT_AFTER and self._cancelled * 2 > len(heap):
            kept = []
            for entry in heap:
                if entry.cancelled:
                    entry.queued = entry.cancelled = False
                else:
                    kept.append(entry)
            heapq.heapify(kept)
            self._heap = kept
            self._cancelled = 0

    def _arm(self, at: float) -> None:
        self._disarm()
        self._timer_at = at
        self._timer = self.loop.call_at(at, self._run)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _run(self) -> None:
        self._timer = None
        now = self.loop.time()
        self._running = True
        try:
            # `expired` may schedule and cancel: the heap is looked up again each time.
            while self._heap and self._heap[0].at <= now:
                item = heapq.heappop(self._heap)
                item.queued = False
                if item.cancelled:
                    item.cancelled = False
                    self._cancelled -= 1
                    continue
                try:
                    item.expired(now)
                except Exception as exc:
                    self.loop.call_exception_handler(
                        {"message": f"{type(item).__name__}.expired failed", "exception": exc}
                    )
        finally:  # armed once, for the earliest left (even if `expired` raised past us)
            self._running = False
            heap = self._heap
            if heap and (self._timer is None or self._timer_at > heap[0].at):
                self._arm(heap[0].at)


_current: Deadlines | None = None


def deadlines_for(loop: asyncio.AbstractEventLoop) -> Deadlines:
    """The `Deadlines` of `loop` (made on first use).

    One is kept: that of the loop last asked for. A process whose streams run on two
    loops at once (a WSGI server's background loop beside another) may get a new one
    for each switch; each keeps serving what it holds, with its own timer."""
    global _current
    current = _current
    if current is None or current.loop is not loop:
        current = _current = Deadlines(loop)
    return current
