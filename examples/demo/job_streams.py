"""What the demo adds to a hub subscription for the page's job panel.

`for_the_page(response, presence)` takes `Broadcast.sse(...)` for a job's topic and
returns the same response with a body that:

- starts with a ``worker`` event naming the process that serves this connection
  (``{"pid": ...}``, no id), so the page can show which worker each connection hit;
- turns the hub's ``: ping`` heartbeat comments into visible ``heartbeat`` events
  (no id, so the browser's ``Last-Event-ID`` does not move);
- ends the connection right after writing a chunk that holds a ``drop`` event (the
  page's "drop" button publishes one into the job's topic, so every connection that
  follows the job, in every worker, ends at the same point of the stream and its
  ``EventSource`` reconnects with ``Last-Event-ID``) or the job's ``done`` event.

Everything else passes unchanged: the replay, the live events, ``reset`` events and
the hub's farewell. `presence` is called with 1 when the body starts and -1 when it
ends, however it ends.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Final

from streamfx import ServerSentEvent, StreamResponse

__all__ = ["HUB_PING", "for_the_page"]

HUB_PING: Final = b": ping\n\n"
"""The chunk a hub subscription writes after `heartbeat` seconds of silence."""

_ENDS_CONNECTION: Final = re.compile(rb"(?m)^event: (?:drop|done)$")


def for_the_page(
    response: StreamResponse, presence: Callable[[int], Awaitable[None]]
) -> StreamResponse:
    """`response` (a hub subscription) with the body described in the module docstring."""

    async def body() -> AsyncIterator[bytes]:
        await presence(1)
        try:
            yield ServerSentEvent(f'{{"pid": {os.getpid()}}}', event="worker").encode()
            async for chunk in response.body:
                if chunk == HUB_PING:
                    yield ServerSentEvent(time.strftime("%H:%M:%S"), event="heartbeat").encode()
                    continue
                yield chunk
                if _ENDS_CONNECTION.search(chunk):
                    return
        finally:
            try:
                await response.aclose()
            finally:
                await presence(-1)

    return StreamResponse(response.status, list(response.headers), body())
