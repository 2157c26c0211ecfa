"""The producer side of a `Channel`: the tasks that pull the sources into a bounded
queue, and the rules that make them wait for room, drop, or wake the consumer.

`Producers` holds the state both sides share; `streamfx._core.channel.Channel` adds
the consumer's API on top of it (the only way anything outside these two modules
touches that state). One producer task runs per source; each appends to one queue of
at most `capacity` items (a list or a deque: see `LIST_CAPACITY`). What happens when the
queue is full depends on the strategy (see `streamfx.Strategy`).

Promises:

- At most `capacity` items are held: those waiting in the queue, plus, in
  ``"suspend"`` mode, what the consumer took and still counts (see `Channel`). In
  ``"suspend"`` mode a producer pulls its next item only once there is room for it, so
  it never holds an extra item in hand.
- Order is kept: items leave in the order they were appended.
- A lossy strategy (``"sliding"``, ``"dropping"``) drops only while the consumer is not
  ready, that is, while it is away from the channel (blocked in a write, say). While
  the consumer waits in the channel, or has been woken and has not run yet, a producer
  that finds the queue full waits for room like ``"suspend"``: a burst into a ready
  consumer loses nothing, however fast it comes. Each dropped item is counted
  (`dropped`) and passed to `on_drop` exactly once, in the producer's task; if
  `on_drop` raises, the channel fails with that error. A drop costs no call, no
  allocation and no trip through the event loop (the count reaches the metrics hook
  in one sum, when the consumer comes back: see the response engine): a producer
  whose consumer stays away (a stalled client) lets the loop run once per `capacity`
  drops in a row (the first time after `capacity` + 1), which is all a source that
  never suspends needs to leave the consumer its turn.
- With `stall_after` (seconds; None: never), a lossy producer *pauses* once its
  consumer has been away that long, counted from when it last left the channel (its
  last take, or its wake-up with nothing to take), and the queue is full. A consumer
  already away that long when the queue fills loses nothing: the first item that
  would be dropped is held instead (a stalled client whose buffer took longer than
  `stall_after` to fill costs no drop at all). One that leaves a full queue sooner
  loses items to the strategy until its `stall_after` is up, measured by a lazy
  deadline in the loop's shared `Deadlines` (`_StallWatch`: no clock read per drop;
  one per take, and one at the first drop since). Paused, the producer holds the
  item it had just pulled and waits for room as ``"suspend"`` does: the source is not
  pulled again, so a stalled stream costs nothing per item its source would produce
  (a wake-up of its task per published item, for a source that waits on a publisher,
  before the pause). Nothing is dropped by the pause: the queue keeps what it holds,
  in order. The consumer's next take wakes the producer at once: the item in hand is
  appended after what the queue holds, the source is pulled again, and the clock
  counts from that take.
- A source that raises stops that source; the other producers are cancelled (their
  cleanup runs); the consumer sees the error after the items buffered before it.
- `aclose` cancels every producer and returns only after each has finished, with its
  source closed (``aclose()`` called, so the source's ``finally`` has run); an error
  raised by that cleanup is raised by `aclose`, never left unread in the channel. An
  error after the first (a second source failing) is logged on ``streamfx.channel``.

How the hot path stays cheap: a producer compares the queue's length with one number,
``_limit``, after (``"suspend"``) or before (lossy) each append, and does anything else
(waking the consumer, waiting for room, dropping) only when that comparison says so.
The consumer sets ``_limit`` so that the next append takes that slow path whenever it
needs the producer's attention: when it starts waiting for an item, and when it holds
items that count against the capacity. Whether the consumer is ready is a flag set
only while it waits in `Channel.wait_ready`; the same flag (``_wait_for_room``) pauses
a stalled producer, set by its stall watch, so the stall clock adds nothing to an
append or to a drop but the first since the consumer last took (the one that reads
the clock and schedules the watch).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import AsyncIterable, Callable, Iterable, Iterator
from functools import lru_cache
from operator import length_hint
from typing import Any, Final, Generic, TypeVar

from streamfx._core.deadlines import Deadline, Deadlines, deadlines_for
from streamfx._core.policy import Strategy
from streamfx._core.util import aclose_iterator, cancel_and_wait, resolve, yield_now

T = TypeVar("T")

_logger = logging.getLogger("streamfx.channel")

LIST_CAPACITY: Final = 256
"""Up to this capacity a compact channel keeps its items in a list (see
`Producers.__init__`); above it, and when not compact, in a deque."""


class Producers(Generic[T]):
    """A bounded queue and the producer tasks that fill it (a `Channel` without its
    consumer's API)."""

    __slots__ = (
        "_capacity",
        "_deadline",
        "_drops_in_a_row",
        "_error",
        "_getter",
        "_handing_out",
        "_held",
        "_items",
        "_left_at",
        "_limit",
        "_loop",
        "_lossless",
        "_on_drop",
        "_producer_scheduled",
        "_putters",
        "_running",
        "_sliding",
        "_stall_after",
        "_stall_watch",
        "_tasks",
        "_wait_for_room",
        "cleanup_error",
        "dropped",
    )

    def __init__(
        self,
        capacity: int,
        strategy: Strategy,
        on_drop: Callable[[T], object] | None = None,
        *,
        compact: bool = True,
        stall_after: float | None = None,
    ) -> None:
        # `compact`: the items wait in a list while the capacity is small: an empty list
        # costs 56 bytes where an empty deque holds a 64-slot block (760), on each of
        # thousands of idle streams, and a sliding drop from a list of at most
        # `LIST_CAPACITY` items moves at most that many pointers. Otherwise (`drain`,
        # refilled many times a second) in a deque: it keeps its block when emptied,
        # where a list is freed by each `take_all` / `hand_out` and regrows, through
        # several reallocations, on every refill.
        self._items: deque[T] | list[T] = [] if compact and capacity <= LIST_CAPACITY else deque()
        self._capacity = capacity
        self._lossless = strategy == "suspend"
        self._sliding = strategy == "sliding"
        self._on_drop = on_drop
        # Seconds away, the queue full, before a lossy producer pauses (None: never).
        self._stall_after = None if self._lossless else stall_after
        self._stall_watch: _StallWatch | None = None  # made at the first drop
        # When the consumer last left the channel (loop time; kept only when watched).
        self._left_at = 0.0
        self._error: BaseException | None = None
        self.cleanup_error: BaseException | None = None
        """The error a producer's cleanup raised when `aclose` cancelled it, if any."""
        self.dropped = 0
        """Items dropped so far (a lossy strategy, while the consumer was away)."""
        self._drops_in_a_row = 0
        # A producer takes its slow path when the queue's length reaches this.
        self._limit = capacity
        # Items of a batch taken by `take_all` and not yet released ("suspend" only).
        self._held = 0
        # The items `hand_out` returned and the consumer has not taken yet.
        self._handing_out: Iterator[T] = _NOTHING_HANDED_OUT
        self._getter: asyncio.Future[bool] | None = None
        # A list, not a deque: it rarely holds more than one future, and an empty list
        # costs a tenth of an empty deque on each of thousands of idle streams.
        self._putters: list[asyncio.Future[None]] = []
        # True from the moment a producer waiting for room is woken until it runs: a
        # consumer that finds the queue empty then only needs to yield once (the
        # producer runs in the same loop iteration) instead of waiting on a future.
        self._producer_scheduled = False
        # A lossy producer that finds the queue full waits for room instead of
        # dropping while this is True: the consumer waits in `Channel.wait_ready`
        # (ready), or the stall watch found it away `stall_after` (paused). Every take
        # and `wake` clears it: the consumer is back.
        self._wait_for_room = False
        self._deadline: float | None = None
        self._tasks: tuple[asyncio.Task[None], ...] = ()
        self._running = 0
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- lifecycle ---------------------------------------------------------------

    def start(self, sources: Iterable[AsyncIterable[T]], name: str = "streamfx") -> None:
        """Start one producer task per source, on the running loop."""
        loop = self._loop = asyncio.get_running_loop()
        if self._stall_after is not None:
            self._left_at = loop.time()  # away from the start until its first take
        self._tasks = tuple(  # one allocation where a list takes two
            loop.create_task(self._produce(source), name=_producer_name(name, index))
            for index, source in enumerate(sources)
        )
        self._running = len(self._tasks)

    @property
    def done(self) -> bool:
        """True once every producer has finished (its items may still be waiting)."""
        return self._running == 0

    async def aclose(self) -> None:
        """Cancel the producers and wait until each one's cleanup has run.

        An error that cleanup raises (a source's finalizer failing as it is cancelled)
        is raised here, to whoever closed the channel early, and kept in
        `cleanup_error`; an error a source had raised before the close is not (it is
        the stream's, for `raise_if_failed`). If the caller is cancelled while it
        waits, `CancelledError` is raised as always (a cancellation is never swallowed)
        and the cleanup's error is only in `cleanup_error`.
        """
        watch = self._stall_watch
        if watch is not None:
            watch.deadlines.cancel(watch)  # a closed channel is held by no heap
        if self._running:
            failed_before = self._error
            try:
                await cancel_and_wait(self._tasks)
            finally:
                if self._error is not failed_before:
                    self.cleanup_error = self._error
                # A cancelled task keeps its CancelledError, whose traceback holds the
                # producer's frame, which holds this channel: without this, every
                # stream closed early (a client gone) would wait, with its request and
                # its buffers, for a full collection of the cyclic garbage collector.
                self._tasks = ()
            if self.cleanup_error is not None:
                raise self.cleanup_error

    # -- the room and the consumer's wake-up ---------------------------------------

    def _reset_limit(self) -> None:
        """Set the length at which a producer must take its slow path (see module doc)."""
        if self._getter is not None:
            # The consumer waits for an item: the next append must wake it.
            self._limit = 1 if self._lossless else 0
        elif self._lossless:
            self._limit = self._capacity - self._taken()
        else:
            self._limit = self._capacity

    def _wake_getter(self) -> None:
        getter = self._getter
        if getter is not None:
            self._getter = None
            self._reset_limit()
            resolve(getter, True)

    def _taken(self) -> int:
        """Items the consumer took that still count against the capacity ("suspend")."""
        return self._held + length_hint(self._handing_out)

    def wake_producers(self) -> None:
        """Wake one producer waiting for room per free slot."""
        putters = self._putters
        if not putters:
            return
        room = self._capacity - len(self._items) - self._held - length_hint(self._handing_out)
        while putters and room > 0:
            putter = putters.pop(0)
            if not putter.done():
                putter.set_result(None)
                self._producer_scheduled = True
                room -= 1

    def _room_signal(self) -> asyncio.Future[None]:
        """A future that `wake_producers` resolves once there is room (await it, then clear
        ``_producer_scheduled``: the woken producer is running)."""
        assert self._loop is not None
        putter = self._loop.create_future()
        self._putters.append(putter)
        return putter

    async def _offer(self, item: T) -> None:
        """Lossy strategies, the queue full: wait for room while the consumer is ready
        or the producer paused (``_wait_for_room``: paused, until the consumer takes
        again); otherwise drop (`_drop`), and after each `capacity` drops in a row let
        the loop run once (a source that never suspends must not starve the
        consumer)."""
        items = self._items
        while len(items) >= self._capacity:
            if self._wait_for_room:
                await self._room_signal()
                self._producer_scheduled = False
                continue
            if (
                not self._drops_in_a_row
                and self._stall_after is not None
                and self._stall_clock_ran_out()
            ):
                continue  # paused: wait for room, the item in hand
            self._drop(item)
            if self._drops_in_a_row > self._capacity:
                self._drops_in_a_row = 1  # as in `_produce`: the run goes on
                await yield_now()
            return
        items.append(item)
        self._wake_getter()

    def _drop(self, item: T) -> None:
        """The queue is full and the consumer away: drop the oldest ("sliding", `item`
        takes its place) or `item` ("dropping"), count it, pass it to `on_drop`."""
        if self._sliding:
            items = self._items
            dropped = items[0]
            del items[0]
            items.append(item)
        else:
            dropped = item
        self.dropped += 1
        self._drops_in_a_row += 1
        if self._on_drop is not None:
            self._on_drop(dropped)

    def _stall_clock_ran_out(self) -> bool:
        """About to drop for the first time since the consumer left (``_left_at``): if
        it has been away `stall_after` already, pause now (True: wait for room, drop
        nothing); otherwise have the watch look again when that time is up (False)."""
        loop, stall_after = self._loop, self._stall_after
        assert loop is not None
        assert stall_after is not None
        due = self._left_at + stall_after
        if loop.time() >= due:
            self._wait_for_room = True
            return True
        watch = self._stall_watch
        if watch is None:
            watch = self._stall_watch = _StallWatch(self, deadlines_for(loop))
        watch.due = due
        watch.deadlines.schedule(watch, due)  # already waiting (earlier): re-checked there
        return False

    async def _produce(self, source: AsyncIterable[T]) -> None:
        items = self._items
        append = items.append
        iterator = aiter(source)
        try:
            try:
                if self._lossless:
                    capacity = self._capacity
                    putters = self._putters
                    loop = self._loop
                    assert loop is not None
                    async for item in iterator:
                        append(item)
                        if len(items) < self._limit:
                            continue
                        # The slow path, inline (a call costs what a refill costs):
                        # wake a waiting consumer; wait until there is room for one more.
                        if self._getter is not None:
                            self._wake_getter()
                        while len(items) + self._taken() >= capacity:
                            putter = loop.create_future()
                            putters.append(putter)
                            await putter
                            self._producer_scheduled = False
                        # `_reset_limit` for "suspend", inline.
                        self._limit = 1 if self._getter is not None else capacity - self._taken()
                else:
                    capacity = self._capacity
                    sliding = self._sliding
                    on_drop = self._on_drop
                    watched = self._stall_after is not None
                    async for item in iterator:
                        if len(items) < self._limit:
                            append(item)
                        elif len(items) >= capacity and not self._wait_for_room:
                            # The consumer is away: `_drop`, inline (a stalled stream
                            # takes this path for every item its source yields until
                            # it pauses; a call, a coroutine or an allocation here is
                            # paid per item). The first drop since it left looks at
                            # the stall clock: away `stall_after` already, pause.
                            if watched and not self._drops_in_a_row and self._stall_clock_ran_out():
                                await self._offer(item)  # paused: waits for room
                                continue
                            if sliding:
                                lost = items[0]
                                del items[0]
                                append(item)
                            else:
                                lost = item
                            self.dropped += 1
                            in_a_row = self._drops_in_a_row = self._drops_in_a_row + 1
                            if on_drop is not None:
                                on_drop(lost)
                            if in_a_row > capacity:
                                # `capacity` drops since the last turn: let the loop
                                # run. The run goes on (1, not 0: only the consumer
                                # ends it).
                                self._drops_in_a_row = 1
                                await yield_now()
                        else:
                            await self._offer(item)  # ready or paused: wait for room
            finally:
                await aclose_iterator(iterator)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._fail(exc)
        finally:
            self._running -= 1
            if self._running == 0:
                self._wake_getter()

    def _fail(self, exc: BaseException) -> None:
        """A source (or its cleanup) raised: the first error is the channel's; a later
        one (another source's cleanup failing as it is cancelled) is logged, not lost."""
        current = asyncio.current_task()
        if self._error is None:
            self._error = exc
        else:
            name = current.get_name() if current is not None else "a producer"
            _logger.error(
                "%s raised after another source had failed (whose error is the "
                "stream's): logged, not raised",
                name,
                exc_info=exc,
            )
        for task in self._tasks:
            if task is not current:
                task.cancel()


class _StallWatch(Deadline):
    """When a lossy producer's consumer has stayed away `stall_after` seconds, as a lazy
    deadline in the loop's shared `Deadlines` (no timer per channel, no clock read per
    drop).

    A *run* is the drops since the consumer last took: ``_drops_in_a_row`` is 0 only
    until the run's first drop (`take_all` and `take_one` set it to 0; the producer's
    turns through the loop set it back to 1, not 0), and that first drop moves `due`
    to `stall_after` after the consumer left (``_left_at``; a consumer away that long
    already pauses the producer there and then, with no watch). So when the loop's
    time reaches `due` and a run is going, the consumer has been away `stall_after`
    or more. A watch still waiting for an earlier run's time re-checks there and moves
    on to `due`."""

    __slots__ = ("deadlines", "due", "producers")

    def __init__(self, producers: Producers[Any], deadlines: Deadlines) -> None:
        super().__init__()
        self.producers = producers
        self.deadlines = deadlines
        self.due = 0.0

    def expired(self, now: float) -> None:
        if now < self.due:
            self.deadlines.schedule(self, self.due)  # a later run started the clock since
            return
        producers = self.producers
        if producers._drops_in_a_row:
            # The consumer is still away: the next item pulled into the full queue
            # waits for room (the consumer's next take clears the flag).
            producers._wait_for_room = True


_NOTHING_HANDED_OUT: Final[Iterator[Any]] = iter(())
"""An exhausted iterator every channel starts with (nothing handed out yet)."""


@lru_cache(maxsize=256)
def _producer_name(name: str, index: int) -> str:
    """A producer task's name, one string shared by every channel of that name (a task
    holds its name for its lifetime: one string per idle stream otherwise)."""
    return f"{name} producer {index}"
