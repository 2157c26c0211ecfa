"""`BroadcastError`: the one error the broadcast layer raises on purpose."""

from __future__ import annotations

from streamfx.errors import StreamfxError

__all__ = ["BroadcastError"]


class BroadcastError(StreamfxError):
    """A publish or a subscription the hub cannot honour.

    Raised by `Broadcast.publish` when the backend cannot take the event (Redis is
    unreachable: the event was *not* published, nothing is dropped silently), by
    `Broadcast.subscribe` once the hub is closing or closed, and when a hub is used
    before it was started (``async with hub:``) where the backend needs that. Never
    raised from inside an open stream: a subscriber sees ``reset``, ``overflow`` or
    the farewell instead.

    A `streamfx.errors.StreamfxError` with status 503 (the hub or its backend cannot
    serve now; the body is the status phrase, the message goes to the server log):
    raised by ``hub.sse(...)`` or ``publish`` in a handler, the adapter's
    ``error_response(exc)`` answers it.
    """

    status_code = 503
