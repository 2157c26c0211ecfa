"""`Collector`: a subscription read in its own task, the way a client reads it.

Shared by the broadcast tests, in process and on Redis. `until_waiting` waits until a
hub's subscribers wait for their next frame (each blocked in `Idle.wait`: *ready*, as
opposed to *away*, suspended while its last chunk is being written).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable

from streamfx import ServerSentEvent, SSEDecoder
from streamfx.broadcast import Broadcast


class Collector:
    """Reads one subscription in its own task, like a client would."""

    def __init__(self, body: AsyncIterator[bytes]) -> None:
        self.body = body
        self.decoder = SSEDecoder()
        self.events: list[ServerSentEvent] = []
        self.pings = 0
        self.chunks = 0
        self.changed = asyncio.Event()
        self.task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for chunk in self.body:
            self.chunks += 1
            self.pings += chunk.count(b": ping\n\n")
            self.events.extend(self.decoder.feed(chunk))
            self.changed.set()

    def data(self) -> list[str | None]:
        return [e.data for e in self.events if e.event is None]

    async def until(self, condition: Callable[[], bool], seconds: float = 20) -> None:
        async with asyncio.timeout(seconds):
            while not condition():
                self.changed.clear()
                await self.changed.wait()

    async def until_data(self, count: int) -> None:
        """Until `count` data events (not resets) have arrived."""
        await self.until(lambda: len(self.data()) >= count)

    async def until_ping(self) -> None:
        """Until one more heartbeat has arrived."""
        pings = self.pings
        await self.until(lambda: self.pings > pings)

    async def started(self) -> None:
        """Until the start (which always names the position) has arrived."""
        await self.until(lambda: bool(self.decoder.last_event_id))

    async def close(self) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task
        await self.body.aclose()  # type: ignore[attr-defined]


async def until_waiting(hub: Broadcast, count: int, seconds: float = 5) -> None:
    """Until `count` of `hub`'s subscribers wait for their next frame.

    A subscriber signals nothing when it starts waiting (that would cost every wait),
    so this lets the other tasks run, one loop turn at a time, until they do."""
    async with asyncio.timeout(seconds):
        while len(set().union(*(log.waiters for log in hub._followed))) < count:  # noqa: ASYNC110
            await asyncio.sleep(0)
