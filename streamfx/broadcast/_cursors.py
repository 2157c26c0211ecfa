"""`Cursors`: where one subscriber is in each of its topics' logs, and how it catches up.

A cursor is the local number of the last frame the subscriber wrote (see
`streamfx.broadcast._log`). `collect` takes everything published since, in one chunk,
applying the overflow rule of `streamfx.broadcast._subscription` (its docstring states
the promises: lag held to `buffer` only when the subscriber was away, ``"disconnect"``,
``"sliding"``, ``"latest"``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Final

from streamfx.broadcast._backend import Backend
from streamfx.broadcast._frames import reset_frame, retagged
from streamfx.broadcast._log import TopicLog
from streamfx.broadcast._positions import join_positions

if TYPE_CHECKING:
    from streamfx.broadcast.hub import Broadcast

__all__ = ["Cursors", "ManyCursors", "cursors_for"]

_NOTHING: Final = (b"", 0)


class Cursors:
    """Where one subscriber is in each of its topics, and how it catches up.

    One topic (the usual case) keeps its cursor in `cursor`; several keep theirs in
    the list `cursors` (`cursor` is then unused), in the subclass `ManyCursors`: no
    list held per subscriber of one topic, and one call per `collect` (no dispatch on
    the number of topics per write)."""

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

    def __init__(
        self, backend: Backend, logs: Sequence[TopicLog], cursors: list[int], hub: Broadcast
    ):
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

    def collect(self, away: bool) -> tuple[bytes, int] | None:
        """Everything due, as ``(chunk, events)``; None when the subscriber overflowed
        in ``"disconnect"`` mode (nothing is taken then). `away`: it comes back from a
        write, so its lag is held to `buffer`; False (it was waiting, or starting):
        only frames gone from the log are lost."""
        # One topic: the hot path of every delivery, kept to a few attribute reads.
        # Within `buffer` (<= the log's capacity) every frame is still held.
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


class ManyCursors(Cursors):
    """The cursors of a subscriber to several topics (see `Cursors`)."""

    __slots__ = ()

    def collect(self, away: bool) -> tuple[bytes, int] | None:
        """As `Cursors.collect`; every frame is retagged with the composite id."""
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


def cursors_for(
    backend: Backend, logs: Sequence[TopicLog], cursors: list[int], hub: Broadcast
) -> Cursors:
    """The cursors of a subscriber to `logs`, starting at `cursors`."""
    return (Cursors if len(logs) == 1 else ManyCursors)(backend, logs, cursors, hub)
