"""`TopicLog`: one topic's shared log of encoded frames in this process.

Frames are numbered 1, 2, 3, ... in the order they were appended (the *local
number*, which never goes back); the log keeps the newest `capacity` of them in a
ring. A subscriber is nothing but the local number of the last frame it wrote (its
*cursor*): everything after it up to the head leaves in one ``b"".join``.

Promises:

- `append` is O(1): it stores the frame, forgets the oldest when full, and wakes the
  subscribers that are waiting (each waiter once). Subscribers that are busy
  writing are not touched; they find the new frames when they come back.
- `join(after, upto)` returns the frames numbered ``after + 1 .. upto``, all of which
  must still be held (``after >= first - 1``), joined into one ``bytes``.
- With a backend that names events itself (Redis), `ids` holds each held frame's id and
  `base_id` the id just before the oldest held frame, so that a ``Last-Event-ID`` can
  be found in the log by bisection.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from streamfx.broadcast._waiter import Waiter

__all__ = ["TopicLog"]

StreamKey = Callable[[str], tuple[int, int]]


class TopicLog:
    """The frames of one topic, their waiters and the number of local subscribers."""

    __slots__ = (
        "base_id",
        "capacity",
        "epoch",
        "frames",
        "ids",
        "next",
        "ready",
        "reset_at",
        "subscribers",
        "topic",
        "waiters",
    )

    def __init__(self, topic: str, capacity: int, *, epoch: str = "", named: bool = False) -> None:
        self.topic: Final = topic
        self.capacity: Final = capacity
        self.epoch: Final = epoch
        """In process: the prefix that makes this log's ids unique (see `local_id`)."""
        self.frames: list[bytes] = []
        self.ids: list[str] | None = [] if named else None
        self.next = 1
        """The local number the next frame will get (the head is ``next - 1``)."""
        self.base_id = ""
        """With `ids`: the id of frame ``first - 1`` (``""`` until the backend set it)."""
        self.ready = not named
        """False while a named log waits for the backend to tell its starting id."""
        self.reset_at = 0
        """The local number of the last frame that records lost history (0: none)."""
        self.subscribers = 0
        self.waiters: set[Waiter] = set()

    @property
    def head(self) -> int:
        """The local number of the newest frame (0 when none was ever appended)."""
        return self.next - 1

    @property
    def first(self) -> int:
        """The local number of the oldest frame still held."""
        return max(1, self.next - self.capacity)

    def append(self, frame: bytes, event_id: str | None = None) -> int:
        """Store `frame` (with its id in a named log), wake the waiters; return its number."""
        number = self.next
        frames = self.frames
        ids = self.ids
        if len(frames) < self.capacity:
            frames.append(frame)
            if ids is not None:
                ids.append(event_id or "")
        else:
            slot = (number - 1) % self.capacity
            frames[slot] = frame
            if ids is not None:
                self.base_id = ids[slot]
                ids[slot] = event_id or ""
        self.next = number + 1
        self.wake(True)
        return number

    def wake(self, value: bool) -> None:
        """Resolve every waiting subscriber's waiter with `value` (their tasks are
        woken together, in one loop callback: see `streamfx.broadcast._waiter`)."""
        waiters = self.waiters
        if waiters:
            for waiter in waiters:
                waiter.set(value)
            waiters.clear()

    def join(self, after: int, upto: int) -> bytes:
        """The frames numbered ``after + 1 .. upto`` joined (all must still be held)."""
        return b"".join(self.frame_list(after, upto))

    def frame_list(self, after: int, upto: int) -> list[bytes]:
        if upto <= after:
            return []
        if after < self.first - 1 or upto > self.head:
            raise IndexError(f"frames {after + 1}..{upto} are not all held")
        start = after % self.capacity
        stop = (upto - 1) % self.capacity + 1
        frames = self.frames
        if start < stop:
            return frames[start:stop]
        return frames[start:] + frames[:stop]

    def id_of(self, number: int) -> str:
        """The id of frame `number` (held, or ``first - 1``) in a named log."""
        assert self.ids is not None
        if number == self.first - 1:
            return self.base_id
        return self.ids[(number - 1) % self.capacity]

    def local_id(self, number: int) -> str:
        """The id of frame `number` in an in-process log: ``<epoch>-<number>``."""
        return f"{self.epoch}-{number}"

    def find(self, key: tuple[int, int], parse: StreamKey) -> int | None:
        """The local number of the held frame (or base) whose id parses to `key`; None
        when no frame has exactly that id. Frames before the last record of lost
        history (`reset_at`) are not searched. Needs a named log."""
        low, high = max(self.first - 1, self.reset_at), self.head
        while low <= high:
            middle = (low + high) // 2
            found = parse(self.id_of(middle))
            if found == key:
                return middle
            if found < key:
                low = middle + 1
            else:
                high = middle - 1
        return None
