"""What a hub asks of its backend (in process, or Redis Streams).

A backend stores published event bodies under ids that increase per topic, and feeds
each topic that has local subscribers into a `TopicLog` in this process. The hub and
its subscribers only ever read those logs; they ask the backend to name positions,
to find a ``Last-Event-ID`` in a log, and (when the id is older than the log) to
replay from its own store.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final, Protocol

from streamfx.broadcast._log import TopicLog

__all__ = ["FETCH", "WAIT", "Backend", "Located"]


@dataclass(slots=True)
class Located:
    """Where a subscriber starts in one topic.

    `cursor` is the local number of the last frame it already has (None: its position
    is lost, and `reason` says why); `replay` holds ``(id, frame)`` pairs from the
    backend's store that come before the log's frames.
    """

    cursor: int | None
    replay: list[tuple[str, bytes]] = field(default_factory=list)
    reason: str = ""


WAIT: Final = "wait"
"""`locate` cannot answer until the log moves (not ready yet, or behind the id)."""
FETCH: Final = "fetch"
"""`locate` needs the backend's store: call `fetch`."""


class Backend(Protocol):
    """The interface between `Broadcast` and a backend (not for applications)."""

    def bind(
        self, capacity: int, on_health: Callable[[bool], None], on_resets: Callable[[int], None]
    ) -> None:
        """Called once by the hub: logs hold `capacity` frames; report health changes
        and ``reset`` events the backend writes into logs (per subscriber)."""

    @property
    def healthy(self) -> bool: ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def publish(self, topic: str, body: bytes) -> str:
        """Store `body` as the next event of `topic`; return its id."""

    def attach(self, topic: str) -> TopicLog:
        """The log of `topic`, fed while at least one subscriber is attached."""

    def detach(self, log: TopicLog) -> None:
        """One subscriber of `log` is gone."""

    def position(self, log: TopicLog, number: int) -> str:
        """The id that names frame `number` of `log` (``first - 1`` or later)."""

    def locate(self, log: TopicLog, position: str) -> Located | str:
        """Where a subscriber at `position` starts: a `Located`, `WAIT` or `FETCH`."""

    async def fetch(self, log: TopicLog, position: str) -> Located | str:
        """Like `locate`, reading the backend's store (`WAIT` when the position is in
        the store but not yet in the log); raises `BroadcastError` when the store
        cannot be reached."""
