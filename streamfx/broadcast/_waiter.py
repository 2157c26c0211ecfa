"""`Waiter`: one subscriber's reusable future; `Wakeups`: waking many, in order, in slices.

Why hand-written: an ``asyncio.Future`` resolves once, so a subscriber that waited on
a fresh future for every event made, per delivery, the future, its ``await``
iterator, the loop ``Handle`` that runs the task's wake-up and that handle's argument
tuple. A thousand subscribers waiting means a thousand of each alive whenever the
garbage collector runs (a publish's wake-up burst is what triggers it): they were
promoted to the oldest generation by the thousand and made the interpreter run full
collections, ~100 ms pauses with a thousand connections open, every few seconds. A
`Waiter` is made once per subscriber and re-armed for each wait, and waking them
takes a loop callback per slice of wake-ups (below), not one ``Handle`` each. asyncio has
no such object; its `Task` accepts any future-like object (the ``_asyncio_future_blocking``
protocol), which is what this is.

Promises:

- `arm` starts a wait; awaiting the waiter then returns the value given to `set`
  (at once if it was set before the await). `set` resolves only an armed, pending
  wait; later calls (and calls while disarmed) change nothing. `disarm` ends the wait
  whatever happened (after the await, in a ``finally``) and tells whether it ended
  with ``set(True)``. `block` is `arm` for a task that yields the waiter at once
  (a `Subscription`'s step hands it to its task itself).
- A task waiting on it is woken by the loop, never inside `set`: the waiters set are
  queued in the loop's `Wakeups`, and their tasks' wake-ups run in loop callbacks, in
  the order they were set, each in its task's context. A wake-up that raises is
  reported to the loop's exception handler; the others still run.
- One callback wakes waiters for about `SLICE` seconds (1 ms), then gives the loop a
  turn (its timers and I/O: the publisher's next publish, new connections, a
  disconnect) and goes on in the next callback; waiters set meanwhile queue behind the
  ones not yet woken. Why: with a thousand subscribers, a wake-up and its write cost
  ~30 us each on a small machine, so waking all in one callback held the loop ~30 ms.
  The publisher's next event then waited for the whole pass and reached every
  subscriber only in the pass after: ~2 passes of latency. In slices, an event
  published during a pass reaches the subscribers not yet woken in that same pass
  (they take everything due when they run), so no event waits more than about one
  pass. Measured with 1,000 subscribers at 100 events/s (`bench/load_broadcast.py`'s
  fan-out, 1 ms slices): p50 35 -> 19-20 ms, p99 72-75 -> 45-53 ms, the same
  deliveries per second.
- Cancelling the waiting task cancels the wait (the task gets ``CancelledError``, as
  with a future); a wait already resolved is not cancelled (the task then gets the
  cancellation at its next step, as asyncio does with a done future).
- Awaiting it allocates nothing that lives through the wait: the waiter is its own
  ``await`` iterator (it yields itself once). What a waiting subscriber still holds
  per wait is asyncio's: the task's wake-up method and the ``anext`` awaitable of the
  ``async for`` that drives the subscription.
"""

from __future__ import annotations

import asyncio
import contextvars
import time
from collections import deque
from collections.abc import Callable, Generator
from typing import Any, Final

__all__ = ["SLICE", "Waiter", "Wakeups", "wakeups_for"]

SLICE: Final = 0.001
"""Seconds of wake-ups after which `Wakeups` lets the loop run its timers and I/O."""
_CLOCK_EVERY: Final = 8  # wake-ups between two looks at the clock
_clock: Final = time.perf_counter

_PENDING: Final = 0
_DONE: Final = 1
_CANCELLED: Final = 2
_DISARMED: Final = 3

Callback = Callable[["Waiter"], object]


class Waiter:
    """One subscriber's reusable future; see the module docstring."""

    __slots__ = (
        "_asyncio_future_blocking",
        "callback",
        "context",
        "loop",
        "message",
        "state",
        "value",
        "wakeups",
        "yielded",
    )

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.wakeups = wakeups_for(loop)
        self._asyncio_future_blocking = False
        self.state = _DISARMED
        self.value = False
        self.yielded = False
        self.message: Any = None
        self.callback: Callback | None = None
        self.context: contextvars.Context | None = None

    def arm(self) -> Waiter:
        """Start a wait: pending until `set` or a cancellation; returns the waiter."""
        self.state = _PENDING
        self.yielded = False
        return self

    def block(self) -> Waiter:
        """`arm`, for a task that yields the waiter at once (as an ``await`` of it would
        on a pending wait): returns it ready to be handed to the task, which then waits
        on it; the wait's value is what `disarm` returns. One call where ``arm()`` and
        ``__next__()`` were two: a `Subscription` does this once per write."""
        self.state = _PENDING
        self.yielded = True
        self._asyncio_future_blocking = True
        return self

    def disarm(self) -> bool:
        """End the wait, however it ended (called by the waiting task itself); returns
        True if it ended with ``set(True)``, else False (``set(False)``, cancelled or
        still pending)."""
        woken = self.state == _DONE and self.value
        self.state = _DISARMED
        self.callback = self.context = None
        return woken

    @property
    def armed(self) -> bool:
        """Between `arm` and `disarm` (resolved or not)."""
        return self.state != _DISARMED

    def set(self, value: bool) -> None:
        """Resolve a pending wait with `value` (its task is woken by the loop)."""
        if self.state != _PENDING:
            return
        self.state = _DONE
        self.value = value
        if self.callback is not None:
            # `Wakeups.add`, written out: a publish does this once per waiting subscriber
            wakeups = self.wakeups
            wakeups.ready.append(self)
            if not wakeups.scheduled:
                wakeups.schedule()

    # -- awaiting: the waiter is its own iterator --------------------------------

    def __await__(self) -> Generator[Waiter, None, bool]:
        # The waiter is its own iterator (see `__next__`): what `await` needs, though
        # not the generator type the annotation names.
        return self  # type: ignore[return-value]

    def __iter__(self) -> Waiter:
        return self

    def __next__(self) -> Waiter:
        if not self.yielded:
            self.yielded = True
            if self.state == _PENDING:
                self._asyncio_future_blocking = True
                return self  # to the task, which calls add_done_callback
        raise StopIteration(self.result())

    # -- what asyncio's Task asks of a future ------------------------------------

    def get_loop(self) -> asyncio.AbstractEventLoop:
        return self.loop

    def done(self) -> bool:
        return self.state != _PENDING

    def cancelled(self) -> bool:
        return self.state == _CANCELLED

    def result(self) -> bool:
        if self.state == _CANCELLED:
            raise asyncio.CancelledError(*(() if self.message is None else (self.message,)))
        if self.state != _DONE:
            raise asyncio.InvalidStateError("no wait is over")
        return self.value

    def add_done_callback(
        self, callback: Callback, *, context: contextvars.Context | None = None
    ) -> None:
        """The waiting task's wake-up (one task waits on a waiter: a second callback
        for the same wait is refused)."""
        if self.callback is not None:
            raise RuntimeError("a Waiter is awaited by one task at a time")
        self.callback = callback
        self.context = contextvars.copy_context() if context is None else context
        if self.state != _PENDING:
            self.wakeups.add(self)

    def remove_done_callback(self, callback: Callback) -> int:
        if self.callback is not None and self.callback == callback:
            self.callback = self.context = None
            return 1
        return 0

    def cancel(self, msg: Any = None) -> bool:
        if self.state != _PENDING:
            return False
        self.state = _CANCELLED
        self.message = msg
        if self.callback is not None:
            self.wakeups.add(self)
        return True


class Wakeups:
    """The waiters of one loop to wake: in the order they were set, in loop callbacks
    that each stop after about `SLICE` seconds (see the module docstring)."""

    __slots__ = ("context", "loop", "ready", "scheduled")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.ready: deque[Waiter] = deque()
        self.scheduled = False
        self.context = contextvars.Context()  # the callback's own: no copy per publish

    def add(self, waiter: Waiter) -> None:
        self.ready.append(waiter)
        if not self.scheduled:
            self.schedule()

    def schedule(self) -> None:
        """Run the wake-ups in the next loop callback (called when none is scheduled)."""
        self.scheduled = True
        self.loop.call_soon(self.run, context=self.context)

    def run(self) -> None:
        """Wake waiters in order until none is left or the slice is spent; the rest
        (and any set meanwhile, behind them) in the next loop callback."""
        ready = self.ready
        deadline = _clock() + SLICE
        woken = 0
        try:
            while ready:
                waiter = ready.popleft()
                # The waiting task's wake-up, run here rather than in a method of the
                # waiter: one call less per delivery.
                callback, context = waiter.callback, waiter.context
                waiter.callback = waiter.context = None
                try:
                    if callback is not None and context is not None:
                        context.run(callback, waiter)
                except Exception as exc:
                    self.loop.call_exception_handler(
                        {"message": "a broadcast wake-up failed", "exception": exc}
                    )
                woken += 1
                if not woken % _CLOCK_EVERY and _clock() >= deadline:
                    break
        finally:
            if ready:
                self.loop.call_soon(self.run, context=self.context)
            else:
                self.scheduled = False


_current: Wakeups | None = None


def wakeups_for(loop: asyncio.AbstractEventLoop) -> Wakeups:
    """The `Wakeups` of `loop` (made on first use; one is kept: that of the loop last
    asked for, as `streamfx._core.deadlines.deadlines_for` does)."""
    global _current
    current = _current
    if current is None or current.loop is not loop:
        current = _current = Wakeups(loop)
    return current
