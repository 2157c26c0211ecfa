"""The watch `to_aiohttp` keeps on a client while it streams to it (private).

Separate from `streamfx.adapters.aiohttp` only to keep that module small; aiohttp is
imported here for types only.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from streamfx._core.deadlines import Deadline, Deadlines, deadlines_for
from streamfx.adapters._common import WriteWatchdog

if TYPE_CHECKING:
    from aiohttp import web

logger = logging.getLogger("streamfx.adapters.aiohttp")


class DisconnectWatch(Deadline):
    """Checks, every `interval` seconds while started, that the client of `request` is
    still connected; if it is not, cancels `task` (the handler) once and remembers that
    it did.

    `writes` applies the write timeout (`WriteWatchdog`, with `write_timeout`): when one
    write waited that long, the connection is aborted and `task` cancelled the same way.

    aiohttp does not cancel handlers on disconnect by default and tells nothing to a
    handler that is not writing, so an idle stream (a quiet SSE channel, an export
    waiting on a slow query) would otherwise hold its resources until its next write.
    The check is a lazy deadline in the loop's shared `Deadlines` (one heap slot per
    stream, no task and no timer handle of its own: a `TimerHandle` per stream, with
    its context and bound method, cost ~280 bytes per idle connection), and nothing is
    done per chunk here.
    """

    __slots__ = ("_deadlines", "_interval", "_request", "_task", "fired", "watching", "writes")

    def __init__(
        self,
        request: web.BaseRequest,
        task: asyncio.Task[Any],
        interval: float,
        write_timeout: float | None,
    ) -> None:
        super().__init__()
        self._request = request
        self._task = task
        self._interval = interval
        self._deadlines: Deadlines = deadlines_for(asyncio.get_running_loop())
        self.watching = False
        self.fired = False
        # The watch itself is the watchdog's `on_stall` (`__call__`): a bound method
        # would be one more object held per open stream.
        self.writes = WriteWatchdog(write_timeout, self, logger)

    def start(self) -> None:
        if not self.watching and not self.fired:
            self.watching = True
            deadlines = self._deadlines
            deadlines.schedule(self, deadlines.loop.time() + self._interval)

    def stop(self) -> bool:
        """Stop watching (for good: the write timeout too); True if the watch fired and
        this is the first stop to say so."""
        self.writes.stop()
        if self.watching:
            self.watching = False
            self._deadlines.cancel(self)
        fired, self.fired = self.fired, False
        return fired

    def expired(self, now: float) -> None:
        if not self.watching:
            return
        transport = self._request.transport
        if transport is None or transport.is_closing():
            self._fire("client disconnected")
        else:
            self._deadlines.schedule(self, now + self._interval)

    def stalled(self) -> None:
        """The write timeout: abort the connection and cancel the handler."""
        transport = self._request.transport
        if transport is not None:
            transport.abort()
        self._fire("client stalled")

    __call__ = stalled  # the watchdog's `on_stall`

    def _fire(self, reason: str) -> None:
        if self.watching:  # fired once: not checked again
            self.watching = False
            self._deadlines.cancel(self)
        self.fired = True
        self._task.cancel(f"streamfx: {reason}")
