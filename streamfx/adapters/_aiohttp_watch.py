"""The watch `to_aiohttp` keeps on a client while it streams to it (private).

Separate from `streamfx.adapters.aiohttp` only to keep that module small; aiohttp is
imported here for types only.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from streamfx.adapters._common import WriteWatchdog

if TYPE_CHECKING:
    from aiohttp import web

logger = logging.getLogger("streamfx.adapters.aiohttp")


class DisconnectWatch:
    """Checks, every `interval` seconds while started, that the client of `request` is
    still connected; if it is not, cancels `task` (the handler) once and remembers that
    it did.

    `writes` applies the write timeout (`WriteWatchdog`, with `write_timeout`): when one
    write waited that long, the connection is aborted and `task` cancelled the same way.

    aiohttp does not cancel handlers on disconnect by default and tells nothing to a
    handler that is not writing, so an idle stream (a quiet SSE channel, an export
    waiting on a slow query) would otherwise hold its resources until its next write.
    A timer handle costs no task, and nothing is done per chunk here.
    """

    __slots__ = ("_handle", "_interval", "_loop", "_request", "_task", "fired", "writes")

    def __init__(
        self,
        request: web.BaseRequest,
        task: asyncio.Task[Any],
        interval: float,
        write_timeout: float | None,
    ) -> None:
        self._request = request
        self._task = task
        self._interval = interval
        self._loop = asyncio.get_running_loop()
        self._handle: asyncio.TimerHandle | None = None
        self.fired = False
        self.writes = WriteWatchdog(write_timeout, self._stalled, logger)

    def start(self) -> None:
        if self._handle is None and not self.fired:
            self._handle = self._loop.call_later(self._interval, self._check)

    def stop(self) -> bool:
        """Stop watching (for good: the write timeout too); True if the watch fired and
        this is the first stop to say so."""
        self.writes.stop()
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        fired, self.fired = self.fired, False
        return fired

    def _check(self) -> None:
        self._handle = None
        transport = self._request.transport
        if transport is None or transport.is_closing():
            self._fire("client disconnected")
        else:
            self._handle = self._loop.call_later(self._interval, self._check)

    def _stalled(self) -> None:
        transport = self._request.transport
        if transport is not None:
            transport.abort()
        self._fire("client stalled")

    def _fire(self, reason: str) -> None:
        self.fired = True
        self._task.cancel(f"streamfx: {reason}")
