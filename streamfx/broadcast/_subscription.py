"""One subscriber: a cursor per topic into the shared logs, and the body that writes.

A `Subscription` is the body of `Broadcast.sse` and `Broadcast.subscribe` (an async
iterator of ``bytes``). It runs in the task that iterates it (the adapter's):
no task, no queue, no copy of a frame per subscriber. How it starts is
`streamfx.broadcast._opening`; what it collects per write, `streamfx.broadcast._cursors`.
What it promises:

- First chunk, at once: ``retry: N`` (or an empty comment) and, when the start needs
  no waiting, how the subscriber starts: the replay of what followed its
  ``Last-Event-ID``, or exactly one ``reset`` when that id cannot be honoured; then an
  id-only frame naming its position (so that a reconnect even before the first event
  resumes losslessly). When the start must wait (Redis unreachable, or not caught up
  to the id), the first chunk is sent alone and heartbeats go on meanwhile; the start
  follows in the next chunk, always ending with that id-only frame.
- Then every write carries everything published since the last one (one chunk), in
  publish order per topic, nothing repeated, nothing skipped except as below.
- Lag counts only while the subscriber is *away*: between handing out a chunk and
  being asked for the next, while that chunk is being written (the rule of
  `Channel`). A subscriber that was waiting for its next frame is never behind:
  however many frames arrived while it waited or before it got to run (a burst
  published in one loop turn, one ``XREAD`` reply), it takes them all in one write,
  bounded only by the history. The replay at the start is not held to `buffer`
  either.
- A subscriber more than `buffer` events behind in a topic when it comes back from a
  write: ``"disconnect"`` -> one ``overflow`` event (with a jittered ``retry:``) and the
  end; ``"sliding"`` -> the oldest are skipped, one ``reset`` event, then the newest
  `buffer`; ``"latest"`` -> only the newest. The same applies to a waiting subscriber
  whose frames left the history before it ran.
- While nothing happens, ``: ping`` after `heartbeat` seconds of silence.
- When the hub closes (or a shutdown is requested): the frames already due (within
  `buffer` if it was away), then the farewell with a jittered ``retry:``, then the end.
- Metrics, kind ``"broadcast"``: the stream opened and closed, events and bytes
  written, events skipped (`items_dropped`), and to the hub's figures (replayed,
  resets, overflows).
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, Awaitable, Generator
from types import TracebackType
from typing import TYPE_CHECKING, Final, NoReturn

from streamfx.broadcast._backend import FETCH
from streamfx.broadcast._cursors import Cursors, cursors_for
from streamfx.broadcast._frames import (
    DEFAULT_RECONNECT_MS,
    OPENING,
    PING,
    farewell_frame,
    overflow_frame,
    position_frame,
)
from streamfx.broadcast._idle import Idle
from streamfx.broadcast._log import TopicLog
from streamfx.broadcast._opening import Start, fetch, plan
from streamfx.broadcast._positions import split_positions
from streamfx.broadcast._waiter import Waiter
from streamfx.broadcast.errors import BroadcastError
from streamfx.metrics import Guarded, NullMetrics, Outcome, get_metrics, guarded, reports_items

if TYPE_CHECKING:
    from streamfx.broadcast._backend import Located
    from streamfx.broadcast.hub import Broadcast

__all__ = ["KIND", "Subscription"]

KIND: Final = "broadcast"

# The life of a `Subscription`: nothing held yet; following (to be closed); its last
# chunk was handed out (the next step ends it); ended (closed, nothing held).
_NEW: Final = 0
_FOLLOWING: Final = 1
_LAST: Final = 2
_ENDED: Final = 3


class Subscription:
    """The body of one subscription: an async iterator of chunks (``bytes``).

    Hand-written, not an async generator, for what every subscriber holds and does per
    write. A generator's frame held every local of the start and of the live loop
    (~0.6 KB per idle subscriber) and each ``anext`` made an awaitable that lived
    through the wait. Here the live state is a few slots; the object is its own
    ``anext`` awaitable and its own ``await`` iterator, so nothing is made per wait,
    and a write is one step of `__next__`. The start, which may await the store, is
    an async generator (`_open`) that is dropped once the subscriber is live.

    Closing: `aclose` (what every adapter calls), a cancellation or an error in a step
    (the subscription ends at once, as a generator would), or, for one dropped without
    being closed, its finalizer; each ends it once (`_end`).
    """

    __slots__ = (
        "away",
        "cursors",
        "hook",
        "hub",
        "idle",
        "label",
        "opening",
        "outcome",
        "reconnect_ms",
        "reports_items",
        "started",
        "state",
        "waiting",
    )

    def __init__(
        self,
        hub: Broadcast,
        topics: list[str],
        last_event_id: str | None,
        heartbeat: float | None,
        retry: int | None,
        name: str,
    ) -> None:
        self.hub = hub
        self.state = _NEW
        self.outcome: Outcome = "closed"
        self.cursors: Cursors | None = None
        self.idle: Idle | None = None
        self.away = True  # back from a write: what was published meanwhile is lag
        self.waiting = False  # suspended in a wait (the task awaits the idle's waiter)
        self.hook: Guarded | NullMetrics = NullMetrics()
        self.reports_items = False
        self.label = ""
        self.started = 0.0
        self.reconnect_ms = DEFAULT_RECONNECT_MS if retry is None else retry
        self.opening: AsyncGenerator[bytes, None] | None = self._open(
            topics, last_event_id, heartbeat, retry, name
        )

    # -- the start ---------------------------------------------------------------

    async def _open(
        self,
        topics: list[str],
        last_event_id: str | None,
        heartbeat: float | None,
        retry: int | None,
        name: str,
    ) -> AsyncGenerator[bytes, None]:
        """The start's chunks (see the module docstring); sets `cursors` when the
        subscriber goes live, else it ends after the last chunk (`outcome`)."""
        hub = self.hub
        prefix = OPENING if retry is None else f"retry: {retry}\n\n".encode()
        if hub.closing:
            self.state = _LAST
            yield prefix + farewell_frame(hub._farewell, self.reconnect_ms)
            return
        self.hook = hook = guarded(get_metrics())
        self.reports_items = reports_items(hook)
        self.label = label = name or hub.name
        backend = hub._backend
        attached: list[TopicLog] = []
        hub._joined()  # first: it refuses a loop other than the hub's
        self.idle = idle = Idle(attached, heartbeat)  # filled as the topics attach
        hook.stream_opened(KIND, label)
        self.started = time.monotonic()
        self.state = _FOLLOWING
        for topic in topics:
            attached.append(backend.attach(topic))
            hub._attached(attached[-1])
        del topics  # attached: the names are not held for the stream's life
        idle.logs = logs = tuple(attached)  # no spare room held for the stream's life
        del attached
        wanted = split_positions(last_event_id, len(logs))
        found: list[Located | None] = [None] * len(logs)
        while True:
            start = plan(backend, logs, wanted, found)
            if isinstance(start, Start):
                break
            if start == FETCH:
                assert isinstance(wanted, list)
                try:
                    if await fetch(backend, logs, wanted, found):
                        continue
                except BroadcastError:
                    pass  # the store is unreachable: wait for it (heartbeats go on)
            if prefix:
                yield prefix
                prefix = b""
            if hub.closing:
                self.outcome = "completed"
                self.state = _LAST
                yield farewell_frame(hub._farewell, self.reconnect_ms)
                return
            try:
                woken = await idle.waiting()
            finally:
                idle.waited()
            if not woken:
                yield PING
                idle.wrote()
        cursors = cursors_for(backend, logs, start.cursors, hub)
        due = cursors.collect(away=False)
        assert due is not None, "the start is not held to the buffer"
        hub._count("replayed", start.replayed + due[1])
        if start.reset:
            hub._count("resets", 1)
        chunk = prefix + start.lead + due[0] + position_frame(cursors.position())
        hook.items_sent(KIND, label, start.replayed + due[1], len(chunk))
        self.cursors = cursors  # the live steps follow (`__next__`); `away` notes the write
        yield chunk

    async def _opening_step(self, opening: AsyncGenerator[bytes, None]) -> bytes:
        """One chunk of the start. After the last one (`cursors` set) the start's
        generator is closed at once: nothing of the start is held while the subscriber
        waits for its first event."""
        try:
            chunk = await anext(opening)
        except StopAsyncIteration:  # it ended at the start (the hub is closing)
            self.opening = None
            self._end(self.outcome)
            raise
        except Exception:
            self.opening = None
            self._end("error")
            raise
        except BaseException:  # cancelled: ended, as a generator would be
            self.opening = None
            self._end("closed")
            raise
        if self.cursors is not None:  # the start's chunk: live from the next step
            self.opening = None
            await opening.aclose()  # suspended at its last yield: it ends there
        return chunk

    # -- the async iterator: each step is `__next__` -----------------------------

    def __aiter__(self) -> Subscription:
        return self

    def __anext__(self) -> Awaitable[bytes]:
        opening = self.opening
        if opening is not None:
            return self._opening_step(opening)
        return self

    def __await__(self) -> Generator[Waiter, None, bytes]:
        # Its own iterator (`__next__`, `send`, `throw`, `close`): nothing per await.
        return self

    def __iter__(self) -> Subscription:
        return self

    def send(self, value: None) -> Waiter:
        return self.__next__()

    def __next__(self) -> Waiter:
        """One live step: raises ``StopIteration(chunk)`` with the next chunk (the
        await's result), returns the armed waiter for the task to wait on, or raises
        ``StopAsyncIteration`` at the end."""
        idle = self.idle
        if self.waiting:  # the task is back from the wait, which ended with `set`:
            # a cancelled wait comes back through `throw`, never here
            self.waiting = False
            assert idle is not None
            if not idle.waited():
                self.away = True  # the ping is written: the next step notes it
                raise StopIteration(PING)
            self.away = False  # it was ready: a backlog found now is not lag
        elif self.state != _FOLLOWING:
            self._end(self.outcome)
            raise StopAsyncIteration
        elif self.away:
            assert idle is not None
            idle.wrote()  # back from the last write
        cursors = self.cursors
        assert cursors is not None
        assert idle is not None
        try:  # the chunk is raised outside: no exception goes through here per write
            closing = self.hub._closing  # set by close() or, one turn later, a shutdown
            due = cursors.collect(self.away)
            if cursors.skipped:
                self._skipped(cursors)
            if closing or due is None:
                chunk = self._last(due, closing)
            else:
                chunk, events = due
                if chunk and self.reports_items:
                    self.hook.items_sent(KIND, self.label, events, len(chunk))
        except Exception:
            self._end("error")
            raise
        if chunk:
            self.away = True
            raise StopIteration(chunk)
        self.waiting = True
        return idle.block()  # the armed waiter, for the task to wait on

    def _skipped(self, cursors: Cursors) -> None:
        self.hook.items_dropped(KIND, self.label, cursors.skipped)
        if cursors.overflow == "sliding":
            self.hub._count("resets", 1)
        cursors.skipped = 0

    def _last(self, due: tuple[bytes, int] | None, closing: bool) -> bytes:
        """The last chunk: what is due and the farewell, or the overflow event."""
        hub = self.hub
        if closing:
            chunk, events = due if due is not None else (b"", 0)
            chunk += farewell_frame(hub._farewell, self.reconnect_ms)
        else:
            hub._count("overflows", 1)
            chunk, events = overflow_frame(self.reconnect_ms), 0
        self.hook.items_sent(KIND, self.label, events, len(chunk))
        self.outcome = "completed"
        self.state = _LAST
        return chunk

    def throw(
        self,
        kind: type[BaseException] | BaseException,
        value: object = None,
        traceback: TracebackType | None = None,
    ) -> NoReturn:
        """An exception thrown into the awaiting task (a cancellation): the wait ends
        and so does the subscription."""
        if isinstance(kind, BaseException):
            error = kind
        elif isinstance(value, BaseException):
            error = value
        else:
            error = kind() if value is None else kind(value)
        self._stop_waiting()
        self._end("error" if isinstance(error, Exception) else "closed")
        raise error.with_traceback(traceback) if traceback is not None else error

    def close(self) -> None:
        """The awaiting coroutine is closed: the subscription ends."""
        self._stop_waiting()
        self._end("closed")

    async def aclose(self) -> None:
        """End the subscription (safe to call again); what every adapter calls."""
        opening, self.opening = self.opening, None
        if opening is not None:
            await opening.aclose()
        self._let_go()

    def __del__(self) -> None:
        if self.state != _FOLLOWING or self.idle is None:
            return
        # Dropped while following: let go of the logs on the next loop turn, as the
        # loop finalizes an async generator, not from inside whatever code the
        # collector interrupted (it may be iterating the hub's topics); at once if
        # the loop is gone.
        try:
            self.idle.loop.call_soon(self._let_go)
        except RuntimeError:
            self._let_go()

    def _let_go(self) -> None:
        """End it now (what `aclose` does once the start is closed)."""
        self._stop_waiting()
        self._end("closed" if self.state == _FOLLOWING else self.outcome)

    def _stop_waiting(self) -> None:
        if self.waiting:
            self.waiting = False
            assert self.idle is not None
            self.idle.waited()

    def _end(self, outcome: Outcome) -> None:
        """Let go of everything (once): the heartbeat, the logs, the metrics."""
        if self.state in (_NEW, _ENDED) or self.idle is None:
            self.state = _ENDED
            return
        self.state = _ENDED
        hub = self.hub
        idle = self.idle
        idle.close()
        for log in idle.logs:
            hub._backend.detach(log)
            hub._detached(log)
        hub._left()
        self.hook.stream_closed(KIND, self.label, time.monotonic() - self.started, outcome)
