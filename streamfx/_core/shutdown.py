"""Ending open streams on purpose when the server shuts down.

Why this exists: ASGI servers wait for open responses to finish before they stop (uvicorn
only then runs the lifespan shutdown), and an SSE stream never finishes by itself. So
without help, one open ``EventSource`` holds a deploy hostage until the server's
graceful-shutdown timeout cancels everything mid-write.

`request_shutdown()` flips one process-wide flag and wakes every *drainable* stream
(SSE bodies are; exports and downloads are not, because ending them early would
hand the client a truncated file: they get the server's grace period to finish). A
drainable stream then sends what it already holds, its farewell (if any), and ends
cleanly, so the server can stop and clients reconnect elsewhere. A drainable stream
that starts after the request ends at once.

How to trigger it:

- `drain_on_signals()` once the server has installed its own signal handlers (from an
  ASGI lifespan startup, for uvicorn and hypercorn): SIGINT and SIGTERM then request
  the shutdown first and call the server's handler after.
- aiohttp runs ``app.on_shutdown`` before it waits for connections: append a callback
  that calls `request_shutdown()`.
- Anything else: call `request_shutdown()` yourself (it is thread-safe).

`reset_shutdown()` clears the flag (for tests, or a server restarted in process).
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable
from functools import partial
from types import FrameType
from typing import Any

_requested = False
# Each subscriber's `wake` and its loop. Keyed by `wake` itself (a stream's bound
# method compares equal to a fresh one of the same object): one dict entry per open
# stream and nothing else, which matters with thousands of idle streams.
_listeners: dict[Callable[[], None], asyncio.AbstractEventLoop] = {}


def shutdown_requested() -> bool:
    """True once `request_shutdown` has been called (until `reset_shutdown`)."""
    return _requested


def request_shutdown() -> None:
    """Ask every drainable stream in the process to end cleanly. Idempotent.

    Safe to call from any thread and from a signal handler: each stream is woken on
    its own event loop.
    """
    global _requested
    _requested = True
    for wake, loop in list(_listeners.items()):
        if not loop.is_closed():
            loop.call_soon_threadsafe(wake)


def reset_shutdown() -> None:
    """Clear the shutdown request (for tests or an in-process restart)."""
    global _requested
    _requested = False


def on_shutdown(wake: Callable[[], None]) -> Callable[[], None]:
    """Call `wake()` on the running loop when a shutdown is requested.

    Returns the function that unsubscribes, which does what ``off_shutdown(wake)``
    does. Subscribing the same `wake` (an equal callable) again replaces it. Used by
    stream bodies; most code never needs it.
    """
    _listeners[wake] = asyncio.get_running_loop()
    return partial(off_shutdown, wake)


def off_shutdown(wake: Callable[[], None]) -> None:
    """Unsubscribe `wake` (or an equal callable: a bound method of the same object);
    nothing happens if it is not subscribed."""
    _listeners.pop(wake, None)


def drain_on_signals(*signums: int) -> None:
    """Request a shutdown on SIGINT and SIGTERM (or `signums`), then call the handler
    that was installed before (the server's, or Python's default).

    Must be called from the main thread, after the server installed its handlers
    (from an ASGI lifespan startup, say), so that the server still sees the signal.
    """
    for signum in signums or (signal.SIGINT, signal.SIGTERM):
        previous = signal.getsignal(signum)
        signal.signal(signum, _chained(previous))


def _chained(previous: Any) -> Callable[[int, FrameType | None], None]:
    def handler(signum: int, frame: FrameType | None) -> None:
        request_shutdown()
        if callable(previous):
            previous(signum, frame)
        elif previous == signal.SIG_DFL:
            signal.signal(signum, signal.SIG_DFL)
            signal.raise_signal(signum)

    return handler
