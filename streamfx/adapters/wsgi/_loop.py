"""The process's background event loop, on which WSGI adapters run async bodies.

WSGI servers call applications from their own threads (gunicorn's sync and gthread
workers, waitress's thread pool), none of which runs an event loop. `background_loop`
returns one event loop per process, running in a daemon thread that is started on first
use (thread-safe: concurrent first calls start one loop).

Fork safety: a forked child (gunicorn forks its workers, possibly after importing the
app in the master with ``--preload``) inherits the loop object but not its thread. The
loop records the pid it was started in; the first call in a child starts a fresh loop
there. The parent's loop object is kept referenced in the child and never closed, since
it still looks "running" and shares its selector with the parent.

At interpreter exit the loop is stopped (streams still open then are not drained).
"""

from __future__ import annotations

import asyncio
import atexit
import os
import threading

_lock = threading.Lock()
_current: tuple[int, asyncio.AbstractEventLoop, threading.Thread] | None = None
_inherited: list[asyncio.AbstractEventLoop] = []


def background_loop() -> asyncio.AbstractEventLoop:
    """The running background loop of this process, started if there is none yet."""
    global _current
    current = _current
    pid = os.getpid()
    if current is not None and current[0] == pid:
        return current[1]
    with _lock:
        current = _current
        if current is not None:
            if current[0] == pid:
                return current[1]
            _inherited.append(current[1])
        loop = asyncio.new_event_loop()
        started = threading.Event()
        thread = threading.Thread(
            target=_run, args=(loop, started), name="streamfx-wsgi-loop", daemon=True
        )
        thread.start()
        started.wait()
        _current = (pid, loop, thread)
        return loop


def _run(loop: asyncio.AbstractEventLoop, started: threading.Event) -> None:
    asyncio.set_event_loop(loop)
    loop.call_soon(started.set)
    try:
        loop.run_forever()
    finally:
        asyncio.set_event_loop(None)


def _after_fork_in_child() -> None:
    # A lock held by another thread of the parent at fork time stays held forever in
    # the child: replace it. The pid check above does the rest.
    global _lock
    _lock = threading.Lock()


def _stop_at_exit() -> None:
    current = _current
    if current is None or current[0] != os.getpid():
        return
    _, loop, thread = current
    loop.call_soon_threadsafe(loop.stop)
    thread.join(timeout=1.0)


os.register_at_fork(after_in_child=_after_fork_in_child)
atexit.register(_stop_at_exit)
