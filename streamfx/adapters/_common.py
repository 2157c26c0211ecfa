"""What every adapter shares (framework-neutral, private): how an error is answered,
how the adapters' timing arguments are checked, and the write-timeout rule.

Error answers. An error raised before a response starts (``for_request`` refusing,
the first body chunk failing, ``download()`` refusing a path, an upload refused by its
limits, an open circuit) is answered the same by every adapter:

- a `streamfx.errors.StreamfxError` (`DownloadError`, `UploadError`,
  `CircuitOpenError`, `BroadcastError`, or an application's own subclass) with its
  ``status_code``, its extra ``headers`` (``Retry-After`` on a 503 from an open
  circuit) and a short ``text/plain; charset=utf-8`` body with a ``Content-Length``:
  its ``detail``, which is written for the client (the status phrase unless the error
  says more, as an upload's limit does), folded to one line of at most `MAX_MESSAGE`
  characters;
- anything else with 500 and the phrase "Internal Server Error" only, whatever
  attributes it has: the messages of other errors hold server paths or internals;
- an `UploadError` is answered with `ErrorAnswer.close` set: what is left of the
  refused body is not wanted, and a server that keeps the connection reads and drops
  all of it first (uvicorn does, for as long as the client sends). Each adapter does
  what its server allows: the ASGI and Quart upload helpers send ``Connection:
  close`` unless what is left is small (`streamfx.adapters._upload_refusal`), aiohttp
  closes after its own bounded lingering read, gunicorn drains a bounded amount or closes by itself
  (PEP 3333 forbids ``Connection`` to applications) and waitress has read the body
  before the application ran;
- the detail goes to the server log only: a 4xx at INFO, a 5xx at ERROR, each with the
  exception (type, message, traceback), on the adapter's own logger.

The write-timeout rule is `WriteWatchdog`'s docstring; it is the one meaning of the
``write_timeout`` argument of every adapter.

Hand-written: the frameworks each have their own error pages and timeouts (or none),
and the point of this module is that streamfx answers the same on all of them.
"""

from __future__ import annotations

import asyncio
import logging
import math
import weakref
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Final

from streamfx._core.deadlines import Deadline, Deadlines, deadlines_for
from streamfx._upload.errors import UploadError
from streamfx.errors import StreamfxError, phrase

MAX_MESSAGE: Final = 300
"""The most characters of an error's `detail` shown to the client."""


# -- error answers -----------------------------------------------------------------------


def error_status(exc: BaseException) -> int:
    """The HTTP status for `exc`: a `StreamfxError`'s ``status_code``, else 500."""
    return exc.status_code if isinstance(exc, StreamfxError) else 500


def reason_phrase(status: int) -> str:
    """The reason phrase of `status` ("Not Found" for 404); "" for a code Python does
    not know (a status line may leave it empty)."""
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""


def error_text(exc: BaseException) -> bytes:
    """The short plain-text body for `exc`: a `StreamfxError`'s ``detail`` (one line, at
    most `MAX_MESSAGE` characters), else "Internal Server Error"."""
    if not isinstance(exc, StreamfxError):
        return phrase(500).encode()
    detail = " ".join(exc.detail.split())[:MAX_MESSAGE] or phrase(exc.status_code)
    return detail.encode("utf-8", "replace")


def error_headers(text: bytes, exc: BaseException | None = None) -> list[tuple[str, str]]:
    """``Content-Type`` and ``Content-Length`` of an error body `text`, then the extra
    headers of `exc` when it is a `StreamfxError` (``Retry-After``, say)."""
    headers = [
        ("content-type", "text/plain; charset=utf-8"),
        ("content-length", str(len(text))),
    ]
    if isinstance(exc, StreamfxError):
        headers.extend(exc.headers.items())
    return headers


@dataclass(frozen=True, slots=True)
class ErrorAnswer:
    """What an adapter sends for an error: `status`, `body` and its `headers`; `close`:
    the rest of the request body is not wanted (an upload error), so the connection
    should not be kept to read it."""

    status: int
    body: bytes
    headers: list[tuple[str, str]]
    close: bool = False


def answer_error(exc: BaseException, logger: logging.Logger) -> ErrorAnswer:
    """The answer to `exc` (see the module docstring); logs the detail to `logger`."""
    status = error_status(exc)
    log_error(exc, status, logger)
    body = error_text(exc)
    return ErrorAnswer(status, body, error_headers(body, exc), isinstance(exc, UploadError))


def log_error(exc: BaseException, status: int, logger: logging.Logger) -> None:
    """Log `exc`, answered with `status`, to the server's log: a 5xx at ERROR, a 4xx at
    INFO, each with the exception."""
    if status >= 500:
        logger.error("the response failed before it started; answered %d", status, exc_info=exc)
    else:
        name = type(exc).__name__
        logger.info("answered %d %s: %s: %s", status, phrase(status), name, exc, exc_info=exc)


# -- argument checks ---------------------------------------------------------------------


def check_seconds(name: str, value: float) -> None:
    """Raise ValueError unless `value` is a positive number of seconds (int or float, not
    a bool, not NaN); `name` is the argument's name, for the message."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"{name} must be positive (a number of seconds), got {value!r}")


def check_write_timeout(write_timeout: float | None) -> None:
    """Raise ValueError unless `write_timeout` is a positive number of seconds or None."""
    if write_timeout is not None:
        check_seconds("write_timeout", write_timeout)


# -- the write-timeout rule --------------------------------------------------------------


class WriteWatchdog(Deadline):
    """The write-timeout rule, the same in every adapter.

    ``write_timeout``: if the client has not taken a chunk of the body for
    ``write_timeout`` seconds, that is, the server has not finished sending a chunk it
    was given that long ago, the client is treated as gone: `on_stall` is called (once)
    and the adapter ends the response as on a disconnect, so the body is cancelled and
    closed and its finalizers run, and the connection is closed without the end of the
    body. "Sending a chunk" is, per adapter: the ASGI ``send`` of a body message, the
    aiohttp ``write`` (with its drain), Quart's and Django's send of a chunk handed out
    by the body (from the chunk leaving the body to the framework asking for the next),
    and a WSGI server's write (from its ``next()`` returning a chunk to its next
    ``next()``).

    Only the time one chunk waits counts: a client that takes each chunk in time is never
    cut, however long the stream lasts, and neither is a stream with nothing to send (an
    idle SSE stream: keep a heartbeat to notice a client that vanished). ``None``: wait
    forever. Not watched: whatever the server sends by itself (the status line, a file
    it sends by path or with ``sendfile``).

    "In time" is coarser than it sounds: the kernel wakes a blocked sender only when
    about half of its socket send buffer has drained, so one chunk may wait for that
    much to reach the client. A client slower than about half the send buffer per
    `write_timeout` is cut although it reads (Linux grows the buffer up to
    ``net.ipv4.tcp_wmem``'s maximum, 4 MiB by default: with the default 60 s, below
    some 35 KB/s in the worst case). This is the one meaning every adapter can keep:
    ASGI, Quart and Django see no socket, only whether a send has completed.

    Clients that stalled together (connected at the same moment, their buffers full at
    the same moment) are evicted one per turn of the event loop, in the order their
    time ran out (`_Evictions`): each eviction's work (cancelling, closing the body,
    logging) then interleaves with the other streams' instead of holding them all up in
    one turn. A response that ends while its eviction waits its turn (`stop`) is left
    alone.

    The adapter calls `writing` when it hands the server a chunk and `written` when the
    server is done with it. No timer of its own: a lazy deadline in the loop's shared
    `Deadlines` (one loop timer for every stream), set only while a chunk waits and
    pushed again at most once per `write_timeout`; per chunk one clock read.
    """

    __slots__ = (
        "_deadlines",
        "_due",
        "_logger",
        "_loop",
        "_on_stall",
        "_since",
        "_stopped",
        "_timeout",
    )

    def __init__(
        self,
        write_timeout: float | None,
        on_stall: Callable[[], object],
        logger: logging.Logger,
    ) -> None:
        """Watch on the running loop; `on_stall` runs on it, as a loop callback."""
        super().__init__()
        self._timeout = math.inf if write_timeout is None else write_timeout
        self._stopped = write_timeout is None
        self._on_stall = on_stall
        self._logger = logger
        self._loop = asyncio.get_running_loop()  # its clock is read per chunk (no bound
        # method kept: one object less per open stream)
        self._since = 0.0  # loop time the waiting chunk was handed over; 0.0: none waits
        self._deadlines: Deadlines | None = None
        self._due = False  # the eviction waits its turn

    def writing(self) -> None:
        """A chunk was handed to the server: its time starts."""
        self._since = now = self._loop.time()
        if not self.queued and not self._stopped:  # queued: it re-checks `_since` then
            deadlines = self._deadlines
            if deadlines is None:
                deadlines = self._deadlines = deadlines_for(self._loop)
            deadlines.schedule(self, now + self._timeout)

    def written(self) -> None:
        """The server is done with the chunk."""
        self._since = 0.0

    def stop(self) -> None:
        """Never call `on_stall` from now on (safe to call again); let go of it.

        `on_stall` is often a bound method of the object that holds this watchdog: kept,
        it would make a reference cycle, and the stream's objects (its request and
        buffers with it) would wait for a full collection of the cyclic garbage
        collector instead of going as the response ends."""
        self._halt()
        self._due = False
        self._on_stall = _stalled_after_stop

    def _halt(self) -> None:
        """Stop watching, keeping `on_stall` for an eviction about to be due."""
        self._stopped = True
        self._since = 0.0
        if self._deadlines is not None:
            self._deadlines.cancel(self)

    def expired(self, now: float) -> None:
        since = self._since
        if self._stopped or not since:
            return  # nothing waits: the next `writing` schedules the deadline again
        deadline = since + self._timeout
        if now < deadline:
            assert self._deadlines is not None
            self._deadlines.schedule(self, deadline)
            return
        self._halt()
        self._due = True
        _evictions(self._loop).add(self._loop, self._evict)

    def _evict(self) -> None:
        if not self._due:
            return  # the response ended (`stop`) while its eviction waited
        self._due = False
        self._logger.info(
            "the client took nothing for %s s: treating it as gone (write_timeout)",
            self._timeout,
        )
        on_stall, self._on_stall = self._on_stall, _stalled_after_stop  # once; let go
        on_stall()


def _stalled_after_stop() -> None:
    """The `on_stall` of a watchdog stopped or done with its eviction: never called
    (`stop` clears `_due` first, and an eviction is made once)."""


class _Evictions:
    """The evictions due on one event loop, run one per turn of the loop, in order
    (it holds no reference to its loop: the loop is the weak key it is found by)."""

    __slots__ = ("_waiting",)

    def __init__(self) -> None:
        self._waiting: deque[Callable[[], None]] = deque()

    def add(self, loop: asyncio.AbstractEventLoop, evict: Callable[[], None]) -> None:
        self._waiting.append(evict)
        if len(self._waiting) == 1:
            loop.call_soon(self._run_one, loop)

    def _run_one(self, loop: asyncio.AbstractEventLoop) -> None:
        evict = self._waiting.popleft()
        try:
            evict()
        finally:
            if self._waiting:
                loop.call_soon(self._run_one, loop)  # the next one in the next turn


_evictions_by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Evictions] = (
    weakref.WeakKeyDictionary()
)


def _evictions(loop: asyncio.AbstractEventLoop) -> _Evictions:
    found = _evictions_by_loop.get(loop)
    if found is None:
        found = _evictions_by_loop[loop] = _Evictions()
    return found
