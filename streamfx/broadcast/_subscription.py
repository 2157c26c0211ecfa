"""One subscriber: a cursor per topic into the shared logs, and the body that writes.

`follow` is the body of `Broadcast.sse` and `Broadcast.subscribe`. It runs in the
task that iterates it (the adapter's): no task, no queue, no copy of a frame per
subscriber. What it promises:

- First chunk, at once: ``retry: N`` (or an empty comment) and, when the start needs
  no waiting, how the subscriber starts: the replay of what followed its
  ``Last-Event-ID``, or exactly one ``reset`` when that id cannot be honoured; then an
  id-only frame naming its position (so that a reconnect even before the first event
  resumes losslessly). When the start must wait (Redis unreachable, or not caught up
  to the id), the first chunk is sent alone and heartbeats go on meanwhile; the start
  follows in the next chunk, always ending with that id-only frame.
- Then every write carries everything published since the last one (one chunk), in
  publish order per topic, nothing repeated, nothing skipped except as below.
- Lag counts only while the subscriber is *away*: suspended at a ``yield`` while its
  last chunk is being written (the rule of `Channel`). A subscriber that was waiting
  for its next frame is never behind: however many frames arrived while it waited or
  before it got to run (a burst published in one loop turn, one ``XREAD`` reply), it
  takes them all in one write, bounded only by the history. The replay at the start
  is not held to `buffer` either.
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
from collections.abc import AsyncGenerator
from typing import TYPE_CHECKING, Final

from streamfx.broadcast._backend import FETCH, WAIT, Backend, Located
from streamfx.broadcast._frames import (
    DEFAULT_RECONNECT_MS,
    OPENING,
    PING,
    farewell_frame,
    overflow_frame,
    position_frame,
    reset_frame,
    retagged,
)
from streamfx.broadcast._idle import Idle
from streamfx.broadcast._log import TopicLog
from streamfx.broadcast._positions import MALFORMED, join_positions, split_positions
from streamfx.broadcast.errors import BroadcastError
from streamfx.metrics import Outcome, get_metrics, guarded

if TYPE_CHECKING:
    from streamfx.broadcast.hub import Broadcast

__all__ = ["KIND", "follow"]

KIND: Final = "broadcast"
_NOTHING: Final = (b"", 0)


class _Cursors:
    """Where one subscriber is in each of its topics, and how it catches up.

    One topic (the usual case) keeps its cursor in `cursor`; several keep theirs in
    the list `cursors` (`cursor` is then unused): no list held per subscriber of one
    topic."""

    __slots__ = (
        "backend",
        "buffer",
        "cursor",
        "cursors",
        "logs",
        "overflow",
        "positions",
        "skipped",
    )

    def __init__(self, backend: Backend, logs: list[TopicLog], cursors: list[int], hub: Broadcast):
        self.backend = backend
        self.logs = logs
        self.cursor = cursors[0]
        self.cursors = cursors if len(logs) > 1 else None
        self.buffer = hub.buffer
        self.overflow = hub.overflow
        self.skipped = 0
        # Only a subscriber to several topics writes its own ids (see _positions).
        self.positions = (
            [backend.position(log, cursor) for log, cursor in zip(logs, cursors, strict=True)]
            if len(logs) > 1
            else None
        )

    def position(self) -> str:
        if self.positions is None:
            return self.backend.position(self.logs[0], self.cursor)
        return join_positions(self.positions)

    def collect(self, away: bool) -> tuple[bytes, int] | None:
        """Everything due, as ``(chunk, events)``; None when the subscriber overflowed
        in ``"disconnect"`` mode (nothing is taken then). `away`: it comes back from a
        write, so its lag is held to `buffer`; False (it was waiting, or starting):
        only frames gone from the log are lost."""
        if self.positions is None:
            return self._collect_one(away)
        return self._collect_many(away)

    def _catch_up(self, log: TopicLog, cursor: int, away: bool) -> int | None:
        """The cursor to write from after the overflow rule; None: disconnect.

        A subscriber at most `buffer` (<= the log's capacity) behind still has all its
        frames in the log; one further behind after being away, or one whose frames
        are gone, overflows.
        """
        head = log.next - 1
        behind = head - cursor
        if (away and behind > self.buffer) or cursor < log.first - 1:
            if self.overflow == "disconnect":
                return None
            keep = self.buffer if self.overflow == "sliding" else 1
            self.skipped += behind - keep
            return head - keep
        return cursor

    def _collect_one(self, away: bool) -> tuple[bytes, int] | None:
        # The hot path of every delivery: kept to a few attribute reads. Within
        # `buffer` (<= the log's capacity) every frame is still held.
        log = self.logs[0]
        cursor = self.cursor
        head = log.next - 1
        behind = head - cursor
        if behind <= 0:
            return _NOTHING
        if behind <= self.buffer or (not away and cursor >= log.first - 1):
            self.cursor = head
            if behind == 1:
                return log.frames[cursor % log.capacity], 1
            return log.join(cursor, head), behind
        start = self._catch_up(log, cursor, away)
        if start is None:
            return None
        self.cursor = head
        frames = log.join(start, head)
        if start != cursor and self.overflow == "sliding":
            return reset_frame(self.backend.position(log, start), "skipped") + frames, head - start
        return frames, head - start

    def _collect_many(self, away: bool) -> tuple[bytes, int] | None:
        assert self.positions is not None
        assert self.cursors is not None
        cursors = self.cursors
        starts: list[int] = []
        for log, cursor in zip(self.logs, cursors, strict=True):
            start = self._catch_up(log, cursor, away) if log.head > cursor else cursor
            if start is None:
                return None
            starts.append(start)
        positions = self.positions
        backend = self.backend
        pieces: list[bytes] = []
        if self.overflow == "sliding" and starts != cursors:
            for index, log in enumerate(self.logs):
                positions[index] = backend.position(log, starts[index])
            pieces.append(reset_frame(join_positions(positions), "skipped"))
        events = 0
        for index, log in enumerate(self.logs):
            start, head = starts[index], log.head
            for number, frame in enumerate(log.frame_list(start, head), start + 1):
                positions[index] = backend.position(log, number)
                pieces.append(retagged(frame, join_positions(positions)))
            events += head - start
            cursors[index] = max(head, start)
        return b"".join(pieces), events


class _Start:
    """How a subscriber starts: its cursors and what it writes before the live frames."""

    __slots__ = ("cursors", "lead", "replayed", "reset")

    def __init__(self, cursors: list[int], lead: bytes, replayed: int, reset: bool) -> None:
        self.cursors = cursors
        self.lead = lead
        self.replayed = replayed
        self.reset = reset


def _fresh(logs: list[TopicLog]) -> _Start:
    return _Start([log.head for log in logs], b"", 0, False)


def _reset(backend: Backend, logs: list[TopicLog], reason: str) -> _Start:
    cursors = [log.head for log in logs]
    positions = [backend.position(log, cursor) for log, cursor in zip(logs, cursors, strict=True)]
    return _Start(cursors, reset_frame(join_positions(positions), reason), 0, True)


def _plan(
    backend: Backend,
    logs: list[TopicLog],
    wanted: list[str] | str | None,
    found: list[Located | None],
) -> _Start | str:
    """The start if it can be decided now (`found` holds what `fetch` returned), else
    `WAIT` or `FETCH`."""
    if not all(log.ready for log in logs):
        return WAIT
    if wanted is None:
        return _fresh(logs)
    if wanted == MALFORMED:
        return _reset(backend, logs, "malformed")
    results: list[Located | str] = []
    for index, (log, position) in enumerate(zip(logs, wanted, strict=True)):
        known = found[index]
        results.append(known if known is not None else backend.locate(log, position))
    for result in results:
        if isinstance(result, Located) and result.cursor is None:
            return _reset(backend, logs, result.reason)
    if WAIT in results:
        return WAIT
    if FETCH in results:
        return FETCH
    located = [result for result in results if isinstance(result, Located)]
    if any(
        result.cursor is not None and result.cursor < log.first - 1
        for log, result in zip(logs, located, strict=True)
    ):
        found[:] = [None] * len(logs)  # the log moved on while the store was read: again
        return FETCH
    cursors = [result.cursor for result in located if result.cursor is not None]
    assert isinstance(wanted, list)
    if len(logs) == 1:
        lead = b"".join(frame for _, frame in located[0].replay)
    else:
        lead = _tagged_replay(backend, logs, wanted, located)
    return _Start(cursors, lead, sum(len(result.replay) for result in located), False)


def _tagged_replay(
    backend: Backend, logs: list[TopicLog], wanted: list[str], located: list[Located]
) -> bytes:
    """The replay of a multi-topic subscriber, each frame carrying its composite id."""
    positions = list(wanted)
    pieces: list[bytes] = []
    for index, result in enumerate(located):
        for event_id, frame in result.replay:
            positions[index] = event_id
            pieces.append(retagged(frame, join_positions(positions)))
    return b"".join(pieces)


async def _fetch(
    backend: Backend, logs: list[TopicLog], wanted: list[str], found: list[Located | None]
) -> bool:
    """Ask the store where each topic that needs it starts; False when one of them must
    wait for its log to catch up first."""
    for index, (log, position) in enumerate(zip(logs, wanted, strict=True)):
        if found[index] is None and backend.locate(log, position) == FETCH:
            result = await backend.fetch(log, position)
            if not isinstance(result, Located):
                return False
            found[index] = result
    return True


async def follow(
    hub: Broadcast,
    topics: list[str],
    last_event_id: str | None,
    heartbeat: float | None,
    retry: int | None,
    name: str,
) -> AsyncGenerator[bytes, None]:
    """The body of one subscription; see the module docstring."""
    prefix = OPENING if retry is None else f"retry: {retry}\n\n".encode()
    reconnect_ms = retry if retry is not None else DEFAULT_RECONNECT_MS
    if hub.closing:
        yield prefix + farewell_frame(hub._farewell, reconnect_ms)
        return
    hook = guarded(get_metrics())
    label = name or hub.name
    backend = hub._backend
    logs: list[TopicLog] = []
    idle = Idle(logs, heartbeat)  # the same list, filled as the topics are attached
    hub._joined()
    hook.stream_opened(KIND, label)
    started = time.monotonic()
    outcome: Outcome = "closed"
    try:
        for topic in topics:
            logs.append(backend.attach(topic))
            hub._attached(logs[-1])
        del topics  # attached: the names are not held for the stream's life
        wanted = split_positions(last_event_id, len(logs))
        found: list[Located | None] = [None] * len(logs)
        while True:
            plan = _plan(backend, logs, wanted, found)
            if isinstance(plan, _Start):
                break
            if plan == FETCH:
                assert isinstance(wanted, list)
                try:
                    if await _fetch(backend, logs, wanted, found):
                        continue
                except BroadcastError:
                    pass  # the store is unreachable: wait for it (heartbeats go on)
            if prefix:
                yield prefix
                prefix = b""
            if hub.closing:
                yield farewell_frame(hub._farewell, reconnect_ms)
                outcome = "completed"
                return
            try:
                woken = await idle.waiting()
            finally:
                idle.waited()
            if not woken:
                yield PING
                idle.wrote()
        cursors = _Cursors(backend, logs, plan.cursors, hub)
        due = cursors.collect(away=False)
        assert due is not None, "the start is not held to the buffer"
        hub._count("replayed", plan.replayed + due[1])
        if plan.reset:
            hub._count("resets", 1)
        chunk = prefix + plan.lead + due[0] + position_frame(cursors.position())
        hook.items_sent(KIND, label, plan.replayed + due[1], len(chunk))
        del plan, wanted, found  # the start's state is not held for the stream's life
        yield chunk
        idle.wrote()
        away = True  # back from a write: what was published meanwhile is lag
        while True:
            closing = hub._closing  # set by close() or, one loop turn later, a shutdown
            due = cursors.collect(away)
            if cursors.skipped:
                hook.items_dropped(KIND, label, cursors.skipped)
                if cursors.overflow == "sliding":
                    hub._count("resets", 1)
                cursors.skipped = 0
            if closing or due is None:
                if closing:
                    chunk, events = due if due is not None else (b"", 0)
                    chunk += farewell_frame(hub._farewell, reconnect_ms)
                else:
                    hub._count("overflows", 1)
                    chunk, events = overflow_frame(reconnect_ms), 0
                hook.items_sent(KIND, label, events, len(chunk))
                yield chunk
                outcome = "completed"
                return
            chunk, events = due
            if chunk:
                hook.items_sent(KIND, label, events, len(chunk))
                yield chunk
                idle.wrote()
                away = True
                continue
            try:
                woken = await idle.waiting()  # inline: no coroutine frame held per wait
            finally:
                idle.waited()
            if woken:
                away = False  # it was ready: a backlog found now is not lag
            else:
                yield PING
                idle.wrote()
                away = True
    except Exception:
        outcome = "error"
        raise
    finally:
        idle.close()
        for log in logs:
            backend.detach(log)
            hub._detached(log)
        hub._left()
        hook.stream_closed(KIND, label, time.monotonic() - started, outcome)
