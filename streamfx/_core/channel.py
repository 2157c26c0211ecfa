"""The bounded hand-off under `buffer`, `merge`, `heartbeat` and the response engine.

A `Channel` is a bounded queue filled by one producer task per source (the producer
side and its promises: `streamfx._core.producers`) and emptied by one consumer through
the API here. The consumer waits with `wait_ready` and takes what is ready with one of:

- `take_all` / `release`: a batch at a time (the response engine encodes and writes
  it at once);
- `hand_out`: a batch passed on one item at a time (`streamfx._core.drain`, which
  `buffer`, `merge` and `heartbeat` return, in ``"suspend"`` mode);
- `take_one`: one item at a time (`drain` with a lossy strategy).

Why not `asyncio.Queue`, or anyio's memory object streams (whose consumer API this
one follows): they hand items over one at a time, with a coroutine call per item on
each side, and anyio adds a checkpoint (a trip through the event loop) to every send
and receive. Here the consumer takes everything that is ready without suspending, and
a producer that was waiting for room is woken once and then refills the queue in one
go, so a fast pipeline pays for a trip through the event loop per *batch*, not per
item. aiostream's operators also hand items over one by one; they sit on top of this
(see `streamfx.pipe`) rather than underneath it.

Promises of the consumer side:

- What the consumer took still counts against the capacity in ``"suspend"`` mode: a
  `take_all` batch until `release` (or the next `wait_ready`), and the items of the
  last `hand_out` until they are taken from its iterator. With a lossy strategy taken
  items leave at once, so a drop never reaches a batch in flight.
- The consumer is *ready* (a lossy producer waits for it instead of dropping) only
  while it waits in `wait_ready`. A take (`take_all` with items, `take_one`), or a
  wake-up with nothing to take, is the consumer coming back and leaving again: it
  wakes a lossy producer paused by `stall_after`, and the stall clock counts from it.
- The consumer sees a source's error (`raise_if_failed`) after the items buffered
  before it; `done` is True once every producer has finished.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

from streamfx._core.deadlines import Deadline, Deadlines, deadlines_for
from streamfx._core.policy import Strategy
from streamfx._core.producers import LIST_CAPACITY, Producers
from streamfx._core.util import resolve, yield_now

__all__ = ["LIST_CAPACITY", "Channel"]

T = TypeVar("T")


class Channel(Producers[T]):
    """A bounded queue fed by producer tasks and drained by one consumer."""

    __slots__ = ("_alarm",)

    def __init__(
        self,
        capacity: int,
        strategy: Strategy,
        on_drop: Callable[[T], object] | None = None,
        *,
        compact: bool = True,
        stall_after: float | None = None,
    ) -> None:
        super().__init__(capacity, strategy, on_drop, compact=compact, stall_after=stall_after)
        self._alarm: _SilenceAlarm | None = None

    @property
    def lossless(self) -> bool:
        """True for ``"suspend"``: a producer waits for room instead of dropping."""
        return self._lossless

    @property
    def waiting(self) -> int:
        """How many items wait to be taken."""
        return len(self._items)

    @property
    def room_waiters(self) -> list[asyncio.Future[None]]:
        """The producers waiting for room, as the channel's own list (the same object
        for the channel's lifetime): a consumer keeps it and tests its truth on its hot
        path. Read it only; `wake_producers` (and `release`, `take_one`) wake them."""
        return self._putters

    def take_all(self) -> list[T]:
        """Remove and return every waiting item, oldest first (an empty list if none).

        In ``"suspend"`` mode the batch still counts against the capacity until
        `release` (or the next `wait_ready`): a batch being encoded and written is part
        of what the channel holds, so a slow consumer slows the producers. With a lossy
        strategy the items leave at once, so a drop never reaches a batch in flight.
        """
        self._wait_for_room = False
        items = self._items
        if not items:
            return []
        batch = list(items)
        items.clear()
        self._deadline = None
        self._drops_in_a_row = 0
        if self._stall_after is not None and self._loop is not None:
            self._left_at = self._loop.time()  # leaves with the batch: the stall clock
        if self._lossless:
            self._held += len(batch)
            self._limit = self._capacity - self._held  # the consumer is not waiting
        elif self._putters:
            self.wake_producers()
        return batch

    def release(self) -> None:
        """The batches taken so far are handed on: stop counting them and wake the
        producers waiting for the room they leave."""
        self._held = 0
        self._limit = self._capacity - self._taken()  # the consumer is not waiting
        if self._putters:
            self.wake_producers()

    def hand_out(self) -> Iterator[T]:
        """``"suspend"`` only: remove every waiting item and return an iterator over
        them, oldest first, for a consumer that passes them on one at a time.

        Each item counts against the capacity until the iterator has moved past it (the
        item just taken from it no longer counts). Call `wake_producers` as items are
        taken while `room_waiters` is not empty, so a producer waiting for room gets it
        as soon as an item leaves.
        """
        self._wait_for_room = False
        items = self._items
        batch = list(items)
        items.clear()
        handing_out = self._handing_out = iter(batch)
        if batch:
            self._deadline = None
        # The consumer is not waiting; the last iterator handed out is exhausted.
        self._limit = self._capacity - self._held - len(batch)
        return handing_out

    def take_one(self) -> T:
        """Remove and return the oldest waiting item (there must be one), and wake a
        producer waiting for the room it leaves (or paused: see `Producers`)."""
        self._wait_for_room = False
        self._drops_in_a_row = 0  # the consumer is back: a stall clock starts anew
        if self._stall_after is not None and self._loop is not None:
            self._left_at = self._loop.time()
        items = self._items
        item = items[0]
        del items[0]  # a list of at most LIST_CAPACITY items, or a deque: either is cheap
        if self._putters:
            self.wake_producers()
        return item

    def wait_ready(self, interval: float | None = None) -> Awaitable[bool]:
        """Wait until an item is waiting or every producer has finished: True.

        With `interval`: False once that many seconds have passed without the consumer
        getting an item, counted from when it came back for more after its last items
        (or after the last False), so a caller that sends a keep-alive on False sends
        one per `interval` of silence. Waiting here also releases a batch still held
        (`release`), and while the consumer waits here it is *ready*: a lossy producer
        that finds the queue full waits for it instead of dropping.

        Call it and await what it returns at once (before using the channel again).
        Without `interval`, a consumer that has to wait (the idle stream of the
        response engine) is handed the very future a producer resolves, so an idle
        stream holds no coroutine of its own while it waits; it then stays *ready*
        until it takes again or is woken by `wake` (the moment it comes back). If that
        await is cancelled, the next item a producer appends clears the wait.
        """
        if interval is None and not self._items and self._running and not self._producer_scheduled:
            if self._held:
                self.release()  # wakes producers only if they wait: none is scheduled yet
            if not self._producer_scheduled:
                # Ready until the consumer takes again (`take_all`, `hand_out`,
                # `take_one`) or is woken empty-handed (`wake`): it is back then.
                self._wait_for_room = True
                return self._getter_future()
        return self._wait_ready(interval)

    async def _wait_ready(self, interval: float | None) -> bool:
        if self._held:
            self.release()
        if self._items:
            self._deadline = None
            return True
        if not self._running:
            return True
        loop = self._loop
        assert loop is not None, "Channel.start() must be called first"
        self._wait_for_room = True
        try:
            if self._producer_scheduled:
                await yield_now()  # the woken producer refills in this loop iteration
                ready = True
            elif interval is None:
                ready = await self._getter_future()
            else:
                now = loop.time()
                if self._deadline is None:
                    self._deadline = now + interval
                if self._deadline <= now:
                    ready = False
                else:
                    getter = self._getter_future()
                    self._arm_silence_alarm(loop, self._deadline)
                    ready = await getter
        finally:
            self._wait_for_room = False
            if self._getter is not None:  # not woken by a producer: no longer waiting
                self._getter = None
                self._reset_limit()
        if self._items:
            self._deadline = None
            return True
        if not ready:
            self._deadline = None
            if self._stall_after is not None:
                self._left_at = loop.time()  # leaves with nothing (a keep-alive): away now
        return ready

    def _arm_silence_alarm(self, loop: asyncio.AbstractEventLoop, due: float) -> None:
        """Have the loop's shared `Deadlines` wake the waiting consumer (False) at `due`.

        Lazy, like the response bodies' keep-alive: an alarm already waiting for an
        earlier time is left there (it re-checks `_deadline` and moves itself on), and
        one is not disarmed when an item wakes the consumer first."""
        alarm = self._alarm
        if alarm is None or alarm.deadlines.loop is not loop:
            alarm = self._alarm = _SilenceAlarm(self, deadlines_for(loop))
        elif alarm.queued and not alarm.cancelled and alarm.at > due:
            alarm.deadlines.cancel(alarm)  # a shorter interval than before: a new alarm
            alarm = self._alarm = _SilenceAlarm(self, alarm.deadlines)
        alarm.deadlines.schedule(alarm, due)

    async def aclose(self) -> None:
        """Close the channel (`Producers.aclose`) and forget its silence alarm, if any:
        a closed channel is held by no loop timer or heap."""
        alarm = self._alarm
        if alarm is not None:
            self._alarm = None
            alarm.deadlines.cancel(alarm)
        await super().aclose()

    def raise_if_failed(self) -> None:
        """Raise the error of the source that failed, if one did."""
        if self._error is not None:
            raise self._error

    def wake(self) -> None:
        """Wake a consumer blocked in `wait_ready` (it returns True and looks again)."""
        self._wait_for_room = False  # it comes back with nothing to take: not ready
        if self._stall_after is not None and self._loop is not None:
            self._left_at = self._loop.time()  # and leaves again (a keep-alive, say)
        self._wake_getter()

    def _getter_future(self) -> asyncio.Future[bool]:
        """The future a producer resolves (True) when it appends or the last one ends."""
        assert self._loop is not None
        getter: asyncio.Future[bool] = self._loop.create_future()
        self._getter = getter
        self._reset_limit()
        return getter


class _SilenceAlarm(Deadline):
    """The end of a `Channel` consumer's silence (`wait_ready` with `interval`), as a
    lazy deadline in the loop's shared `Deadlines`: idle channels hold no loop timer
    of their own, and a wait costs no timer handle."""

    __slots__ = ("channel", "deadlines")

    def __init__(self, channel: Channel[Any], deadlines: Deadlines) -> None:
        super().__init__()
        self.channel = channel
        self.deadlines = deadlines

    def expired(self, now: float) -> None:
        channel = self.channel
        due = channel._deadline
        getter = channel._getter
        if due is None or getter is None:
            return  # not waiting out a silence now: the next such wait schedules it
        if now < due:
            self.deadlines.schedule(self, due)  # the silence started again since
            return
        resolve(getter, False)
