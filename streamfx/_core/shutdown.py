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

How it is triggered:

- With no configuration: the first drainable stream served in a process (an SSE body,
  a broadcast subscriber) installs the drain on SIGINT and SIGTERM, chained to the
  handlers the server installed (uvicorn, hypercorn ``-w 0``, granian workers, aiohttp's
  ``run_app``): the signal requests the shutdown first, then reaches the server's own
  handler exactly as before. By then the server has installed its handlers, so it
  still sees every signal; nothing of the server is patched. Only the main thread can
  install signal handlers, and only a signal that has a Python handler is chained: one
  the process ignores (``SIG_IGN``) or dies of (``SIG_DFL``) is left alone. It is
  checked again at each drainable stream's start, so a handler the server installs
  later is chained too. Opt out with ``set_auto_drain(False)`` or the environment
  variable ``STREAMFX_AUTO_DRAIN=0``.
- `drain_on_signals()` does the same on demand (for other signals, or where streams
  start outside the main thread, say from the lifespan startup).
- aiohttp runs ``app.on_shutdown`` before it waits for connections: append a callback
  that calls `request_shutdown()` (``streamfx.adapters.aiohttp.drain_on_shutdown``).
- Anything else: call `request_shutdown()` yourself (it is thread-safe).

`reset_shutdown()` clears the flag (for tests, or a server restarted in process).
"""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import weakref
from collections.abc import Callable
from functools import partial
from types import FrameType
from typing import Any

_requested = False
# Each subscriber's `wake` and its loop. Keyed by `wake` itself (a stream's bound
# method compares equal to a fresh one of the same object): one dict entry per open
# stream and nothing else, which matters with thousands of idle streams.
_listeners: dict[Callable[[], None], asyncio.AbstractEventLoop] = {}
_auto_drain: bool | None = None  # None: as the environment says (STREAMFX_AUTO_DRAIN)
_our_handlers: weakref.WeakSet[Callable[[int, FrameType | None], None]] = weakref.WeakSet()
DRAINED_SIGNALS = (signal.SIGINT, signal.SIGTERM)
_OFF = frozenset({"0", "false", "no", "off"})  # values of STREAMFX_AUTO_DRAIN that opt out


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
    stream bodies; most code never needs it. Unless turned off (`set_auto_drain`), it
    also chains the drain to the SIGINT and SIGTERM handlers when called on the main
    thread (see the module docstring).
    """
    if threading.current_thread() is threading.main_thread() and auto_drain_enabled():
        _chain_handlers(DRAINED_SIGNALS, only_handled=True)
    _listeners[wake] = asyncio.get_running_loop()
    return partial(off_shutdown, wake)


def off_shutdown(wake: Callable[[], None]) -> None:
    """Unsubscribe `wake` (or an equal callable: a bound method of the same object);
    nothing happens if it is not subscribed."""
    _listeners.pop(wake, None)


def set_auto_drain(enabled: bool) -> None:
    """Turn the automatic drain on signals on or off for this process (on by default,
    unless the environment variable ``STREAMFX_AUTO_DRAIN`` is ``0``). Turning it off
    does not remove handlers already chained."""
    global _auto_drain
    _auto_drain = bool(enabled)


def auto_drain_enabled() -> bool:
    """Whether the first drainable stream chains the drain to the signal handlers."""
    if _auto_drain is not None:
        return _auto_drain
    return os.environ.get("STREAMFX_AUTO_DRAIN", "1").strip().lower() not in _OFF


def drain_on_signals(*signums: int) -> None:
    """Request a shutdown on SIGINT and SIGTERM (or `signums`), then call the handler
    that was installed before (the server's, or Python's default).

    Must be called from the main thread, after the server installed its handlers
    (from an ASGI lifespan startup, say), so that the server still sees the signal.
    A signal whose handler already requests the shutdown is not chained twice.
    """
    _chain_handlers(signums or DRAINED_SIGNALS, only_handled=False)


def _chain_handlers(signums: tuple[int, ...], *, only_handled: bool) -> None:
    for signum in signums:
        previous = signal.getsignal(signum)
        if previous in _our_handlers:
            continue
        if only_handled and not callable(previous):
            continue  # ignored, or fatal: nothing to drain before
        handler = _chained(previous)
        signal.signal(signum, handler)
        _our_handlers.add(handler)


def _chained(previous: Any) -> Callable[[int, FrameType | None], None]:
    def handler(signum: int, frame: FrameType | None) -> None:
        request_shutdown()
        if callable(previous):
            previous(signum, frame)
        elif previous == signal.SIG_DFL:
            signal.signal(signum, signal.SIG_DFL)
            signal.raise_signal(signum)

    return handler
