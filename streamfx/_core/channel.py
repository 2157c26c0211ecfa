"""The bounded hand-off at the heart of `buffer`, `heartbeat` and `merge`.

A `Channel` runs one producer task per source. Each task pulls its source and appends
to a deque that never holds more than `capacity` items; the one consumer pops from it.
What happens when the deque is full depends on the strategy (see `streamfx.Strategy`).

Why not `asyncio.Queue`: a queue hands items over one at a time, with a future and a
task switch per item. Here the consumer drains everything that is ready without
suspending, and a producer that was waiting for room is woken once and then refills
the deque in one go, so a fast pipeline pays for a task switch per *batch*, not per
item. aiostream's operators also hand items over one by one; they sit on top of this
(see `streamfx.pipe`) rather than underneath it.

Promises:

- At most `capacity` items are ever held. In ``"suspend"`` mode a producer pulls its
  next item only after there is room for it, so it never holds an extra item in hand.
- Order is kept: items leave in the order they were appended.
- A source that raises stops that source; the other producers are cancelled (their
  cleanup runs); the consumer sees the error after the items buffered before it.
- `aclose` cancels every producer and returns only after each has finished, with its
  source closed (``aclose()`` called, so the source's ``finally`` has run).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterable, Callable, Iterable
from typing import Generic, TypeVar

from streamfx._core.policy import Strategy
from streamfx._core.util import aclose_iterator, cancel_and_wait

T = TypeVar("T")


class Channel(Generic[T]):
    """A bounded deque fed by producer tasks and drained by one consumer."""

    __slots__ = (
        "_getter",
        "_loop",
        "_running",
        "_tasks",
        "capacity",
        "error",
        "items",
        "on_drop",
        "producer_scheduled",
        "putters",
        "strategy",
    )

    def __init__(
        self, capacity: int, strategy: Strategy, on_drop: Callable[[T], object] | None
    ) -> None:
        self.items: deque[T] = deque()
        self.capacity = capacity
        self.strategy = strategy
        self.on_drop = on_drop
        self.error: BaseException | None = None
        self._getter: asyncio.Future[bool] | None = None
        # A list, not a deque: it rarely holds more than one future, and an empty list
        # costs a tenth of an empty deque on each of thousands of idle streams.
        self.putters: list[asyncio.Future[None]] = []
        # True from the moment a producer waiting for room is woken until it runs:
        # a consumer that finds the deque empty then only needs to yield once (the
        # producer runs in the same loop iteration) instead of waiting on a future.
        self.producer_scheduled = False
        self._tasks: list[asyncio.Task[None]] = []
        self._running = 0
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- lifecycle ---------------------------------------------------------------

    def start(self, sources: Iterable[AsyncIterable[T]], name: str = "streamfx") -> None:
        """Start one producer task per source, on the running loop."""
        loop = self._loop = asyncio.get_running_loop()
        for index, source in enumerate(sources):
            self._tasks.append(
                loop.create_task(self._produce(source), name=f"{name} producer {index}")
            )
        self._running = len(self._tasks)

    @property
    def done(self) -> bool:
        """True once every producer has finished (its items may still be waiting)."""
        return self._running == 0

    async def aclose(self) -> None:
        """Cancel the producers and wait until each one's cleanup has run."""
        if self._running:
            await cancel_and_wait(self._tasks)

    # -- consumer side -----------------------------------------------------------

    def pop(self) -> T:
        """Take the oldest item (the deque must not be empty) and make room for producers."""
        item = self.items.popleft()
        if self.putters:
            self._wake_putter()
        return item

    def release(self) -> None:
        """Wake producers waiting for room (after items were taken out directly)."""
        while self.putters and len(self.items) < self.capacity:
            self._wake_putter()

    async def wait(self, timeout: float | None = None) -> bool:  # noqa: ASYNC109
        """Wait until an item is ready or every producer has finished.

        Returns ``False`` if `timeout` seconds passed first, ``True`` otherwise.
        """
        assert self._loop is not None, "Channel.start() must be called first"
        getter: asyncio.Future[bool] = self._loop.create_future()
        self._getter = getter
        if timeout is None:
            return await getter
        timer = self._loop.call_later(timeout, _resolve, getter, False)
        try:
            return await getter
        finally:
            timer.cancel()

    # -- producer side -----------------------------------------------------------

    def wake(self) -> None:
        """Wake a consumer blocked in `wait` (it returns True and looks again)."""
        self._wake_getter()

    def _wake_getter(self) -> None:
        getter = self._getter
        if getter is not None:
            self._getter = None
            _resolve(getter, True)

    def _wake_putter(self) -> None:
        putters = self.putters
        while putters:
            putter = putters.pop(0)
            if not putter.done():
                putter.set_result(None)
                self.producer_scheduled = True
                return

    async def _room(self) -> None:
        assert self._loop is not None
        while len(self.items) >= self.capacity:
            putter = self._loop.create_future()
            self.putters.append(putter)
            await putter
            self.producer_scheduled = False

    async def _produce(self, source: AsyncIterable[T]) -> None:
        items = self.items
        append = items.append
        capacity = self.capacity
        iterator = aiter(source)
        try:
            try:
                if self.strategy == "suspend":
                    async for item in iterator:
                        append(item)
                        if self._getter is not None:
                            self._wake_getter()
                        if len(items) >= capacity:
                            await self._room()
                else:
                    sliding = self.strategy == "sliding"
                    on_drop = self.on_drop
                    async for item in iterator:
                        if len(items) < capacity:
                            items.append(item)
                        else:
                            if sliding:
                                dropped = items.popleft()
                                items.append(item)
                            else:
                                dropped = item
                            if on_drop is not None:
                                on_drop(dropped)
                            # A source that never suspends must not starve the consumer.
                            await asyncio.sleep(0)
                        if self._getter is not None:
                            self._wake_getter()
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
        if self.error is None:
            self.error = exc
        current = asyncio.current_task()
        for task in self._tasks:
            if task is not current:
                task.cancel()


def _resolve(future: asyncio.Future[bool], value: bool) -> None:
    if not future.done():
        future.set_result(value)
