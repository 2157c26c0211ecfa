"""`Subscriptions`: a metrics hook that counts a hub's open subscriptions.

Shared by the broadcast tests that serve a hub over HTTP: the subscriptions may run on
another thread (WSGI's background loop), so each change wakes the test's loop safely.
"""

from __future__ import annotations

import asyncio

from streamfx.metrics import NullMetrics, Outcome


class Subscriptions(NullMetrics):
    """Counts the hub's open subscriptions (kind ``"broadcast"``) from whichever thread
    runs them, and wakes the test's loop on each change."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.open = 0
        self.closed = 0
        self.changed = asyncio.Event()

    def stream_opened(self, kind: str, name: str) -> None:
        if kind == "broadcast":
            self.open += 1
            self.loop.call_soon_threadsafe(self.changed.set)

    def stream_closed(self, kind: str, name: str, duration: float, outcome: Outcome) -> None:
        if kind == "broadcast":
            self.open -= 1
            self.closed += 1
            self.loop.call_soon_threadsafe(self.changed.set)

    async def until(self, count: int) -> None:
        """Wait (10 s at most) until `count` subscriptions are open."""
        async with asyncio.timeout(10):
            while self.open != count:
                self.changed.clear()
                await self.changed.wait()
