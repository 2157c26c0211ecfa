"""Multipart uploads in a WSGI app: ``wsgi.input`` fed to `parse_multipart`, in the
request's own thread.

Re-exported by `streamfx.adapters.wsgi`. Answer the `UploadError` it raises with
``streamfx.adapters.wsgi.error_response(exc)`` (413 / 415 / 400 / 408, plain text).

WSGI views are synchronous, so `parts(environ, ...)` gives a synchronous iterator of parts,
each a synchronous iterator of content chunks. They run `streamfx.parse_multipart`
itself, the same code as every other adapter (one parser, one set of limits), in the
request's thread and without an event loop: the body it reads is ``wsgi.input``, read
by blocking calls in that thread, so nothing in an upload ever waits on anything an
event loop would have to wake. Each step (the next part, the next chunk) is one
coroutine, driven to its end here by `run_here` with ``send(None)``; the only thing
it may suspend on is the parser's ``asyncio.sleep(0)`` (its turn for other tasks, a
no-op here), and anything else (a future: something that needs a loop) is refused
with `RuntimeError`. Why not the background event loop the WSGI responses use: a
round trip to another thread for every part costs more than parsing the part (about
0.35 ms, so a few thousand fields per second), and the body would still have to be read
in this thread. Measured end to end under gunicorn's gthread worker, beside Flask's own
``request.files`` / ``request.form`` on the same server in the same run
(``bench/load_upload.py --rounds 5``, medians on a loaded 2-core machine): a 100 MiB
file at 168 MB/s against 42 (3.10x), 10,000 small fields at 11,820 fields/s against
3,471 (3.66x).

The body is read only when the parser asks for more: a slow client blocks its own
request thread, never another request, and the body is read no faster than the parts
are consumed (the client is held back by TCP). Reads never go past ``CONTENT_LENGTH``;
without one, the body is read to its end only when the server says it is delimited
(``wsgi.input_terminated``), as PEP 3333 asks. Each read asks for up to `MAX_READ`
bytes; large reads matter: gunicorn copies what it holds of the body on every read, so
64 KiB reads out of its 1 MiB receive buffer cost more than the parsing.

Declared length and read rule (every adapter's, `streamfx.adapters._upload_body`): a
``Content-Length`` larger than ``max_size`` is refused before a byte is read; a client
that sends nothing for ``read_timeout`` seconds, or slower than ``min_rate`` bytes per
second, is refused with `UploadTimeout` (408). A WSGI read blocks until it has all it
asked for, so where the server gives the application the client's socket
(``gunicorn.socket``, ``werkzeug.socket``) a blocked read is cut:

- silence: the socket gets ``read_timeout`` as its timeout while the body is read (its
  own timeout is put back when the body has been read or the parts are closed);
- a trickle: a timer on the process's background loop (`background_loop`, one call to
  it per upload) shuts the socket's reading side down when the read has lasted longer
  than the bytes it waits for would earn (`ReadRule.wait_started`): the read returns
  at once. A read asks for what the kernel already holds for the socket (``FIONREAD``),
  and for at least `MIN_READ` bytes: it never waits for more than `MIN_READ` bytes
  that have not arrived, so a client trickling a byte now and then holds a gunicorn
  thread for at most ``read_timeout + MIN_READ / min_rate`` seconds (46 s with the
  defaults), while a fast client's body is read in reads of up to `MAX_READ`.

Elsewhere the rule is checked when each read returns. Waitress reads the whole body
(into memory or a temporary file) in its I/O thread before it calls the application,
so there a slow client never holds a thread, and waitress's own ``channel_timeout``
applies; `UploadTooLarge` there saves the parsing and keeping, not the reading.
"""

from __future__ import annotations

import asyncio
import os
import socket
import struct
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Iterator
from contextlib import suppress
from pathlib import Path
from types import TracebackType
from typing import IO, Final, TypeVar, Unpack
from wsgiref.types import WSGIEnvironment

from streamfx._upload.errors import MalformedUpload
from streamfx._upload.multipart import PartStream, parse_multipart
from streamfx._upload.part import Part
from streamfx._upload.save import WRITE_SIZE
from streamfx._upload.save import _create as create_file  # the rules of Part.save,
from streamfx._upload.save import _publish as publish_file  # shared, not copied
from streamfx._upload.save import _write_all as write_all
from streamfx.adapters._upload_body import (
    MIN_RATE,
    READ_TIMEOUT,
    ReadRule,
    UploadOptions,
    content_length,
    refuse_declared_length,
)
from streamfx.adapters.wsgi._loop import background_loop

T = TypeVar("T")

MAX_READ: Final = 1024 * 1024
"""The most bytes read from ``wsgi.input`` at once (gunicorn receives up to as much)."""

MIN_READ: Final = 16 * 1024
"""On a socket the read rule watches: the most bytes a read waits for that have not
arrived yet (see the module docstring)."""

_SOCKET_KEYS: Final = ("gunicorn.socket", "werkzeug.socket")


def parts(
    environ: WSGIEnvironment,
    *,
    max_size: int,
    max_part_size: int,
    max_parts: int,
    read_timeout: float | None = READ_TIMEOUT,
    min_rate: int | None = MIN_RATE,
    **options: Unpack[UploadOptions],
) -> WSGIParts:
    """The parts of the request's ``multipart/form-data`` body, read as they are asked for.

        with parts(environ, max_size=..., max_part_size=..., max_parts=...) as stream:
            for part in stream:
                for chunk in part: ...

    The limits, and every other keyword argument (`UploadOptions`: ``max_file_size``,
    ``allowed_types``, ``sniff``...), are `streamfx.parse_multipart`'s; `read_timeout`
    and `min_rate` the read rule (see the module docstring; None turns either off). Raised
    at once: `UploadTooLarge` when ``Content-Length`` already passes `max_size`
    (nothing is read), `UnsupportedMediaType` when the request is not multipart,
    `MalformedUpload` without a boundary. Raised while iterating: `UploadTooLarge`
    (413), `UnsupportedMediaType` (415), `MalformedUpload` (400; also a body that ends
    early or cannot be read), `UploadTimeout` (408). The error reaches the code inside
    the block first, so it can delete what it stored of the refused upload; nothing is
    stored here. Iterate in the request's thread, where no event loop runs.
    """
    rule = ReadRule(read_timeout, min_rate)
    declared = content_length(environ.get("CONTENT_LENGTH"))
    remaining = declared
    if remaining is None and not environ.get("wsgi.input_terminated", False):
        remaining = 0
    reader = _BodyReader(environ["wsgi.input"], remaining, rule, _client_socket(environ))
    stream = parse_multipart(  # checks the arguments; reads nothing yet
        reader.chunks(),
        environ.get("CONTENT_TYPE"),
        max_size=max_size,
        max_part_size=max_part_size,
        max_parts=max_parts,
        **options,
    )
    refuse_declared_length(declared, max_size)
    return WSGIParts(stream, reader)


def _client_socket(environ: WSGIEnvironment) -> socket.socket | None:
    for key in _SOCKET_KEYS:
        sock = environ.get(key)
        if isinstance(sock, socket.socket):
            return sock
    return None


def run_here(step: Awaitable[T]) -> T:
    """Run `step` (a coroutine of the upload) to its end in this thread, without a loop.

    It may suspend only with a bare ``yield`` (``asyncio.sleep(0)``), which is resumed
    at once; `RuntimeError` if it waits on anything else (a future needs a running
    loop), after closing it."""
    coroutine = step.__await__()
    try:
        while True:
            if coroutine.send(None) is not None:
                with suppress(BaseException):
                    coroutine.close()
                raise RuntimeError(
                    "a WSGI upload waited on an event loop: iterate it in the request's "
                    "thread, with synchronous code"
                )
    except StopIteration as done:
        result: T = done.value
        return result


class WSGIParts(Iterator["WSGIPart"]):
    """The parts of an upload, in order (see `parts`). Close it (or use it as
    a context manager) to release the parser; reading stops where it is."""

    __slots__ = ("_closed", "_reader", "_stream")

    def __init__(self, stream: PartStream, reader: _BodyReader) -> None:
        self._stream = stream
        self._reader = reader
        self._closed = False

    def __enter__(self) -> WSGIParts:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def __next__(self) -> WSGIPart:
        try:
            part = run_here(self._stream.__anext__())
        except StopAsyncIteration:
            raise StopIteration from None
        return WSGIPart(part)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            try:
                run_here(self._stream.aclose())
            finally:
                self._reader.done()


class WSGIPart(Iterator[bytes]):
    """One part: `name`, `filename`, `raw_filename`, `content_type`, `headers` as on
    `streamfx.Part`; iterating it yields its content in order. Read it (or `save` it)
    before asking for the next part, or it is skipped."""

    __slots__ = ("_part", "content_type", "filename", "headers", "name", "raw_filename")

    def __init__(self, part: Part) -> None:
        self._part = part
        self.name = part.name
        self.filename = part.filename
        self.raw_filename = part.raw_filename
        self.content_type = part.content_type
        self.headers = part.headers

    def header(self, name: str) -> str | None:
        """The value of the first header called `name` (any case), or ``None``."""
        return self._part.header(name)

    def __next__(self) -> bytes:
        try:
            return run_here(self._part.__anext__())
        except StopAsyncIteration:
            raise StopIteration from None

    def read(self) -> bytes:
        """The rest of the content as one ``bytes`` (at most ``max_part_size`` bytes)."""
        return run_here(self._part.read())

    def save(
        self, destination: str | os.PathLike[str] | None = None, *, overwrite: bool = False
    ) -> Path:
        """Write the rest of the content to a file and return the file's path, with the
        rules of `streamfx.Part.save` (where the file goes; `FileExistsError`; on any
        error nothing is left behind), the writes done here, in the request's thread."""
        target, temporary, descriptor = create_file(self.filename, destination, overwrite)
        try:
            try:
                buffer = bytearray()
                for chunk in self:
                    buffer += chunk
                    if len(buffer) >= WRITE_SIZE:
                        write_all(descriptor, buffer)
                        buffer = bytearray()
                write_all(descriptor, buffer)
            finally:
                os.close(descriptor)
            publish_file(temporary, target, overwrite)
        except BaseException:
            with suppress(FileNotFoundError):
                os.unlink(temporary)
            raise
        return target

    def __repr__(self) -> str:
        return f"WSGIPart(name={self.name!r}, filename={self.filename!r})"


class _BodyReader:
    """``wsgi.input`` as the parser's body, read under the read rule (see the module
    docstring for how a blocked read is cut)."""

    def __init__(
        self,
        stream: IO[bytes],
        remaining: int | None,
        rule: ReadRule,
        sock: socket.socket | None,
    ) -> None:
        self._input = stream
        self._remaining = remaining
        self._rule = rule
        self._guard = _SocketGuard(sock, rule) if sock is not None and rule.enabled else None

    async def chunks(self) -> AsyncIterator[bytes]:
        """The body, a read at a time, in this thread."""
        try:
            while data := self._read():
                yield data
        finally:
            self.done()

    def _read(self) -> bytes:
        remaining = self._remaining
        rule = self._rule
        guard = self._guard
        ready = MAX_READ if guard is None else guard.ready()
        size = min(MAX_READ, max(MIN_READ, ready))
        if remaining is not None:
            size = min(size, remaining)
        if size <= 0:
            self.done()
            return b""
        rule.wait_started(max(0, size - ready))
        if guard is not None:
            guard.reading()
        try:
            data = self._input.read(size)
        except Exception as exc:
            if guard is not None and guard.timed_out(exc):
                raise (rule.expired() if guard.cut else rule.silence()) from exc
            # The message reaches the client: the server's words stay in the cause.
            raise MalformedUpload("the request body could not be read") from exc
        if guard is not None and guard.cut:
            raise rule.expired()
        rule.wait_ended(len(data))
        if remaining is not None:
            self._remaining = remaining - len(data)
            if self._remaining <= 0:
                self.done()  # the whole body is in: the socket is given back at once
        return data

    def done(self) -> None:
        """The body will not be read again: give the socket back as it was."""
        if self._guard is not None:
            self._guard.release()
            self._guard = None


class _SocketGuard:
    """Cuts the blocked reads of one request body on the client's socket (see the
    module docstring): a socket timeout for silence, and a timer on the background
    loop that shuts the reading side down when a read outlasts its deadline."""

    def __init__(self, sock: socket.socket, rule: ReadRule) -> None:
        self._sock = sock
        self._rule = rule
        self._prior: float | None = None
        self._armed = False
        self._released = False
        self._timer: asyncio.TimerHandle | None = None  # touched on the loop only
        self.cut = False
        """True once a read was cut by the timer."""

    def reading(self) -> None:
        """A read is about to start (the first one sets the socket up)."""
        if self._armed:
            return
        self._armed = True
        with suppress(OSError):
            self._prior = self._sock.gettimeout()
            self._sock.settimeout(self._rule.read_timeout)
        if self._rule.min_rate is not None:
            background_loop().call_soon_threadsafe(self._watch)

    def ready(self) -> int:
        """The bytes of the body the kernel holds for the socket now (``FIONREAD``; 0
        when that cannot be told): a read of that many does not wait for the client."""
        if sys.platform == "win32":
            return 0
        import fcntl
        import termios

        try:
            buffer = fcntl.ioctl(self._sock.fileno(), termios.FIONREAD, b"\0\0\0\0")
        except (OSError, ValueError):
            return 0
        ready: int = struct.unpack("i", buffer)[0]
        return ready

    def timed_out(self, exc: BaseException) -> bool:
        """True when `exc`, raised by a read, comes from this guard (the socket's
        timeout, or the reading side shut down by the timer)."""
        return self.cut or isinstance(exc, TimeoutError)

    def release(self) -> None:
        """Stop watching and put the socket's timeout back (from the request's thread)."""
        if self._released:
            return
        self._released = True
        if not self._armed:
            return
        with suppress(OSError):
            self._sock.settimeout(self._prior)
        if self._rule.min_rate is not None:
            background_loop().call_soon_threadsafe(self._stop)

    def _watch(self) -> None:
        """On the loop: cut the current read if it passed its deadline, else look again
        at the deadline (or, between reads, after ``read_timeout``)."""
        self._timer = None
        if self._released:
            return
        deadline = self._rule.deadline
        now = time.monotonic()
        if deadline is not None and now >= deadline:
            self.cut = True
            with suppress(OSError):
                # The descriptor's own shutdown, also under TLS: ``SSLSocket.shutdown``
                # would tear the TLS state down under the thread that is reading.
                socket.socket.shutdown(self._sock, socket.SHUT_RD)
            return
        delay = (self._rule.read_timeout or 0.0) if deadline is None else deadline - now
        self._timer = asyncio.get_running_loop().call_later(delay, self._watch)

    def _stop(self) -> None:
        """On the loop: drop the timer (the request is done with the socket)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
