"""The bounded hand-off under `buffer`, `merge`, `heartbeat` and the response engine.

A `Channel` runs one producer task per source. Each task pulls its source and appends
to a queue of at most `capacity` items (a list or a deque: see `LIST_CAPACITY`); one
consumer takes them out with `wait_ready` and either `take_all` / `release` (a batch
at a time: the response engine), `hand_out` (a batch passed on one item at a time:
`streamfx._core.drain`, which `buffer`, `merge` and `heartbeat` return) or `take_one`
(one at a time, for a lossy `drain`).
What happens when the queue is full depends on the strategy (see `streamfx.Strategy`).

Why not `asyncio.Queue`, or anyio's memory object streams (whose consumer API this
one follows): they hand items over one at a time, with a coroutine call per item on
each side, and anyio adds a checkpoint (a trip through the event loop) to every send
and receive. Here the consumer takes everything that is ready without suspending, and
a producer that was waiting for room is woken once and then refills the queue in one
go, so a fast pipeline pays for a trip through the event loop per *batch*, not per
item. aiostream's operators also hand items over one by one; they sit on top of this
(see `streamfx.pipe`) rather than underneath it.

Promises:

- At most `capacity` items are held: those waiting in the queue, plus, in
  ``"suspend"`` mode, a batch taken with `take_all` until it is released and the
  items of the last `hand_out` not yet taken from its iterator. In
  ``"suspend"`` mode a producer pulls its next item only once there is room for it, so
  it never holds an extra item in hand.
- Order is kept: items leave in the order they were appended.
- A lossy strategy (``"sliding"``, ``"dropping"``) drops only while the consumer is not
  ready, that is, while it is away from the channel (blocked in a write, say). While
  the consumer waits in the channel, or has been woken and has not run yet, a producer
  that finds the queue full waits for room like ``"suspend"``: a burst into a ready
  consumer loses nothing, however fast it comes. Each dropped item is counted
  (`dropped`) and passed to `on_drop` exactly once, in the producer's task; if
  `on_drop` raises, the channel fails with that error. A drop costs no trip through the
  event loop: a producer whose consumer stays away (a stalled client) lets the loop run
  once per `capacity` drops in a row, which is all a source that never suspends needs
  to leave the consumer its turn.
- A source that raises stops that source; the other producers are cancelled (their
  cleanup runs); the consumer sees the error (`raise_if_failed`) after the items
  buffered before it.
- `aclose` cancels every producer and returns only after each has finished, with its
  source closed (``aclose()`` called, so the source's ``finally`` has run); an error
  raised by that cleanup is raised by `aclose`, never left unread in the channel. An
  error after the first (a second source failing) is logged on ``streamfx.channel``.

How the hot path stays cheap: a producer compares the queue's length with one number,
``_limit``, after (``"suspend"``) or before (lossy) each append, and does anything else
(waking the consumer, waiting for room, dropping) only when that comparison says so.
The consumer sets ``_limit`` so that the next append takes that slow path whenever it
needs the producer's attention: when it starts waiting for an item, and when it holds
a batch that counts against the capacity. Whether the consumer is ready is a flag set
only while it waits in `wait_ready`.
"""

from __future__ import annotations

import asyncio
import logging
import types
from collections import deque
from collections.abc import AsyncIterable, Callable, Generator, Iterable, Iterator
from functools import lru_cache
from operator import length_hint
from typing import Any, Final, Generic, TypeVar

from streamfx._core.policy import Strategy
from streamfx._core.util import aclose_iterator, cancel_and_wait

T = TypeVar("T")

_logger = logging.getLogger("streamfx.channel")

LIST_CAPACITY: Final = 256
"""Up to this capacity a compact channel keeps its items in a list (see
`Channel.__init__`); above it, and when not compact, in a deque."""


class Channel(Generic[T]):
    """A bounded queue fed by producer tasks and drained by one consumer."""

    __slots__ = (
        "_capacity",
        "_consumer_ready",
        "_deadline",
        "_drops_in_a_row",
        "_error",
        "_getter",
        "_handing_out",
        "_held",
        "_items",
        "_limit",
        "_loop",
        "_lossless",
        "_on_drop",
        "_producer_scheduled",
        "_putters",
        "_running",
        "_sliding",
        "_tasks",
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
    ) -> None:
        # `compact`: the items wait in a list while the capacity is small: an empty list
        # costs 56 bytes where an empty deque holds a 64-slot block (760), on each of
        # thousands of idle streams, and a sliding drop from a list of at most
        # `LIST_CAPACITY` items moves at most that many pointers. Otherwise (`drain`)
        # in a deque: it keeps its block when emptied, where a list freed by each
        # `take_all` regrows from nothing on every refill (measured: a tenth of
        # `buffer`'s per-item cost at 64 items).
        self._items: deque[T] | list[T] = [] if compact and capacity <= LIST_CAPACITY else deque()
        self._capacity = capacity
        self._lossless = strategy == "suspend"
        self._sliding = strategy == "sliding"
        self._on_drop = on_drop
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
        self._consumer_ready = False
        self._deadline: float | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._running = 0
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- lifecycle ---------------------------------------------------------------

    def start(self, sources: Iterable[AsyncIterable[T]], name: str = "streamfx") -> None:
        """Start one producer task per source, on the running loop."""
        loop = self._loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._produce(source), name=_producer_name(name, index))
            for index, source in enumerate(sources)
        ]
        self._running = len(self._tasks)

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
        path. Read it only; `release` and `take_one` wake them."""
        return self._putters

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
        if self._running:
            failed_before = self._error
            try:
                await cancel_and_wait(self._tasks)
            finally:
                if self._error is not failed_before:
                    self.cleanup_error = self._error
            if self.cleanup_error is not None:
                raise self.cleanup_error

    # -- consumer side: batches --------------------------------------------------------

    def take_all(self) -> list[T]:
        """Remove and return every waiting item, oldest first (an empty list if none).

        In ``"suspend"`` mode the batch still counts against the capacity until
        `release` (or the next `wait_ready`): a batch being encoded and written is part
        of what the channel holds, so a slow consumer slows the producers. With a lossy
        strategy the items leave at once, so a drop never reaches a batch in flight.
        """
        items = self._items
        if not items:
            return []
        batch = list(items)
        items.clear()
        self._deadline = None
        self._drops_in_a_row = 0
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
        producer waiting for the room it leaves."""
        items = self._items
        item = items[0]
        del items[0]  # a list of at most LIST_CAPACITY items, or a deque: either is cheap
        if self._putters:
            self.wake_producers()
        return item

    async def wait_ready(self, interval: float | None = None) -> bool:
        """Wait until an item is waiting or every producer has finished: True.

        With `interval`: False once that many seconds have passed without the consumer
        getting an item, counted from when it came back for more after its last items
        (or after the last False), so a caller that sends a keep-alive on False sends
        one per `interval` of silence. Waiting here also releases a batch still held
        (`release`), and while the consumer waits here it is *ready*: a lossy producer
        that finds the queue full waits for it instead of dropping.
        """
        if self._held:
            self.release()
        if self._items:
            self._deadline = None
            return True
        if not self._running:
            return True
        loop = self._loop
        assert loop is not None, "Channel.start() must be called first"
        self._consumer_ready = True
        try:
            if self._producer_scheduled:
                await _yield_now()  # the woken producer refills in this loop iteration
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
                    timer = loop.call_later(self._deadline - now, _resolve, getter, False)
                    try:
                        ready = await getter
                    finally:
                        timer.cancel()
        finally:
            self._consumer_ready = False
            if self._getter is not None:  # not woken by a producer: no longer waiting
                self._getter = None
                self._reset_limit()
        if self._items:
            self._deadline = None
            return True
        if not ready:
            self._deadline = None
        return ready

    def raise_if_failed(self) -> None:
        """Raise the error of the source that failed, if one did."""
        if self._error is not None:
            raise self._error

    def wake(self) -> None:
        """Wake a consumer blocked in `wait_ready` (it returns True and looks again)."""
        self._wake_getter()

    def _getter_future(self) -> asyncio.Future[bool]:
        """The future a producer resolves (True) when it appends or the last one ends."""
        assert self._loop is not None
        getter: asyncio.Future[bool] = self._loop.create_future()
        self._getter = getter
        self._reset_limit()
        return getter

    # -- producer side -----------------------------------------------------------

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
            _resolve(getter, True)

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
        """Lossy strategies, the queue full: wait for room while the consumer is ready;
        otherwise drop (`_drop`), and after `capacity` drops in a row let the loop run
        once (a source that never suspends must not starve the consumer)."""
        items = self._items
        while len(items) >= self._capacity:
            if self._consumer_ready:
                await self._room_signal()
                self._producer_scheduled = False
                continue
            self._drop(item)
            if self._drops_in_a_row >= self._capacity:
                self._drops_in_a_row = 0
                await _yield_now()
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
                    async for item in iterator:
                        if len(items) < self._limit:
                            append(item)
                        elif (
                            len(items) >= capacity
                            and not self._consumer_ready
                            and self._drops_in_a_row < capacity - 1
                        ):
                            self._drop(item)  # the consumer is away: no coroutine, no trip
                        else:
                            await self._offer(item)
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


_NOTHING_HANDED_OUT: Final[Iterator[Any]] = iter(())
"""An exhausted iterator every channel starts with (nothing handed out yet)."""


@lru_cache(maxsize=256)
def _producer_name(name: str, index: int) -> str:
    """A producer task's name, one string shared by every channel of that name (a task
    holds its name for its lifetime: one string per idle stream otherwise)."""
    return f"{name} producer {index}"


@types.coroutine
def _yield_now() -> Generator[None, None, None]:
    """Let every other ready task run once (``asyncio.sleep(0)`` without its overhead)."""
    yield


def _resolve(future: asyncio.Future[bool], value: bool) -> None:
    if not future.done():
        future.set_result(value)
