"""The watch `to_aiohttp` keeps on a client while it streams to it (private).

Separate from `streamfx.adapters.aiohttp` only to keep that module small; aiohttp is
imported here for types only.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from aiohttp import web

logger = logging.getLogger("streamfx.adapters.aiohttp")


class DisconnectWatch:
    """Checks, every `interval` seconds, that the client of `request` is still there;
    if it is not, cancels `task` (the handler) once and remembers that it did.

    Gone means: the connection is closed, or (with `write_timeout`) bytes have been
    waiting to be sent and the socket took none of them for `write_timeout` seconds,
    in which case the connection is also aborted.

    aiohttp does not cancel handlers on disconnect by default and tells nothing to a
    handler that is not writing, so an idle stream (a quiet SSE channel, an export
    waiting on a slow query) would otherwise hold its resources until its next write,
    and a client that stops reading would hold them for ever. A timer handle costs no
    task, and nothing is done per chunk.
    """

    __slots__ = (
        "_handle",
        "_interval",
        "_loop",
        "_progress_at",
        "_request",
        "_sent",
        "_task",
        "_write_timeout",
        "fired",
    )

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
        self._write_timeout = write_timeout
        self._loop = asyncio.get_running_loop()
        self._handle: asyncio.TimerHandle | None = None
        self._sent = -1
        self._progress_at = 0.0
        self.fired = False

    def start(self) -> None:
        if self._handle is None and not self.fired:
            self._progress_at = self._loop.time()
            self._handle = self._loop.call_later(self._interval, self._check)

    def stop(self) -> bool:
        """Stop watching; True if the watch fired and this is the first stop to say so."""
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
        elif self._stalled(transport):
            logger.info("client took no bytes for %ss: connection aborted", self._write_timeout)
            transport.abort()
            self._fire("client stalled")
        else:
            self._handle = self._loop.call_later(self._interval, self._check)

    def _stalled(self, transport: asyncio.Transport) -> bool:
        if self._write_timeout is None:
            return False
        now = self._loop.time()
        pending = transport.get_write_buffer_size()
        sent = self._request.writer.output_size - pending
        if pending == 0 or sent != self._sent:
            self._sent = sent
            self._progress_at = now
            return False
        return now - self._progress_at >= self._write_timeout

    def _fire(self, reason: str) -> None:
        self.fired = True
        self._task.cancel(f"streamfx: {reason}")
