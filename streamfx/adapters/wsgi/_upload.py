"""Multipart uploads in a WSGI app: ``wsgi.input`` fed to `parse_multipart`.

Re-exported by `streamfx.adapters.wsgi`. Answer the `UploadError` it raises with
``streamfx.adapters.wsgi.error_response(exc)`` (413 / 415 / 400, plain text).

WSGI views are synchronous, so `parts_from_wsgi` gives a synchronous iterator of parts,
each a synchronous iterator of content chunks. The parser runs on the background event
loop; every step (next part, next chunk) is one call into the loop from the request's
thread. The request body is read *by the request's own thread*, only when the parser
asks for more: a slow client blocks its own request thread, never the loop or a thread
pool shared with other requests, and the body is read no faster than the parts are
consumed (the client is held back by TCP).

Reads never go past ``CONTENT_LENGTH``; without one, the body is read to its end only
when the server says it is delimited (``wsgi.input_terminated``), as PEP 3333 asks.
Note that waitress reads the whole request body before it calls the application, so
`UploadTooLarge` there cannot save the reading, only the parsing and keeping.
"""

from __future__ import annotations

import asyncio
import queue
from collections.abc import AsyncIterator, Coroutine, Iterable, Iterator
from types import TracebackType
from typing import IO, Any, Final, TypeVar
from wsgiref.types import WSGIEnvironment

from streamfx._upload.errors import MalformedUpload, UploadTooLarge
from streamfx._upload.multipart import PartStream, parse_multipart
from streamfx._upload.part import Part
from streamfx.adapters.wsgi._loop import background_loop

T = TypeVar("T")

READ_SIZE: Final = 64 * 1024
"""The most bytes read from ``wsgi.input`` at once."""


def parts_from_wsgi(
    environ: WSGIEnvironment,
    *,
    max_size: int,
    max_part_size: int,
    max_parts: int,
    allowed_types: Iterable[str] | None = None,
) -> WSGIParts:
    """The parts of the request's ``multipart/form-data`` body, read as they are asked for.

        with parts_from_wsgi(environ, max_size=..., max_part_size=..., max_parts=...) as parts:
            for part in parts:
                for chunk in part: ...

    The limits and `allowed_types` are `streamfx.parse_multipart`'s. Raised at once:
    `UploadTooLarge` when ``Content-Length`` already passes `max_size` (nothing is
    read), `UnsupportedMediaType` when the request is not multipart, `MalformedUpload`
    without a boundary. Raised while iterating: `UploadTooLarge` (413),
    `UnsupportedMediaType` (415), `MalformedUpload` (400; also a body that ends early or
    cannot be read). The error reaches the code inside the block first, so it can delete
    what it stored of the refused upload; nothing is stored here.
    """
    length = _content_length(environ)
    if length is not None and length > max_size:
        raise UploadTooLarge(f"the upload is larger than {max_size} bytes")
    if length is None and not environ.get("wsgi.input_terminated", False):
        length = 0
    feeder = _Feeder(background_loop(), environ["wsgi.input"], length)
    stream = parse_multipart(
        feeder.body(),
        environ.get("CONTENT_TYPE"),
        max_size=max_size,
        max_part_size=max_part_size,
        max_parts=max_parts,
        allowed_types=allowed_types,
    )
    return WSGIParts(feeder, stream)


def _content_length(environ: WSGIEnvironment) -> int | None:
    raw = environ.get("CONTENT_LENGTH") or ""
    try:
        length = int(raw)
    except ValueError:
        return None
    return length if length >= 0 else None


class WSGIParts(Iterator["WSGIPart"]):
    """The parts of an upload, in order (see `parts_from_wsgi`). Close it (or use it as
    a context manager) to release the parser; reading stops where it is."""

    __slots__ = ("_closed", "_feeder", "_stream")

    def __init__(self, feeder: _Feeder, stream: PartStream) -> None:
        self._feeder = feeder
        self._stream = stream
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
        return WSGIPart(self._feeder, self._feeder.next(self._stream))

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._feeder.run(self._stream.aclose())


class WSGIPart(Iterator[bytes]):
    """One part: `name`, `filename`, `content_type`, `headers` as on `streamfx.Part`;
    iterating it yields its content in order. Read it before asking for the next part,
    or it is skipped."""

    __slots__ = ("_feeder", "_part", "content_type", "filename", "headers", "name")

    def __init__(self, feeder: _Feeder, part: Part) -> None:
        self._feeder = feeder
        self._part = part
        self.name = part.name
        self.filename = part.filename
        self.content_type = part.content_type
        self.headers = part.headers

    def header(self, name: str) -> str | None:
        """The value of the first header called `name` (any case), or ``None``."""
        return self._part.header(name)

    def __next__(self) -> bytes:
        return self._feeder.next(self._part)

    def read(self) -> bytes:
        """The rest of the content as one ``bytes`` (at most ``max_part_size`` bytes)."""
        return self._feeder.run(self._part.read())

    def __repr__(self) -> str:
        return f"WSGIPart(name={self.name!r}, filename={self.filename!r})"


async def _next_or_none(iterator: AsyncIterator[T]) -> T | None:
    try:
        return await anext(iterator)
    except StopAsyncIteration:
        return None


class _Feeder:
    """Runs coroutines on the loop for one request's thread, and serves their body reads
    from that thread while it waits."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, stream: IO[bytes], remaining: int | None
    ) -> None:
        self._loop = loop
        self._input = stream
        self._remaining = remaining
        self._requests: queue.SimpleQueue[asyncio.Future[bytes] | None] = queue.SimpleQueue()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run `coro` on the loop and return its result; read the body when it asks."""
        requests = self._requests = queue.SimpleQueue()
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        future.add_done_callback(lambda _: requests.put(None))
        try:
            while (waiter := requests.get()) is not None:
                try:
                    data = self._read()
                except Exception as exc:
                    # The message reaches the client: the server's words stay in the cause.
                    error = MalformedUpload("the request body could not be read")
                    error.__cause__ = exc
                    self._loop.call_soon_threadsafe(_settle, waiter, b"", error)
                else:
                    self._loop.call_soon_threadsafe(_settle, waiter, data, None)
        except BaseException:
            future.cancel()
            raise
        return future.result()

    def next(self, iterator: AsyncIterator[T]) -> T:
        """The next item of `iterator` (run on the loop); `StopIteration` at its end."""
        item = self.run(_next_or_none(iterator))
        if item is None:
            raise StopIteration
        return item

    def _read(self) -> bytes:
        remaining = self._remaining
        size = READ_SIZE if remaining is None else min(READ_SIZE, remaining)
        if size <= 0:
            return b""
        data = self._input.read(size)
        if remaining is not None:
            self._remaining = remaining - len(data)
        return data

    async def body(self) -> AsyncIterator[bytes]:
        """The request body, each chunk read by the thread waiting in `run`."""
        loop = asyncio.get_running_loop()
        while True:
            waiter: asyncio.Future[bytes] = loop.create_future()
            self._requests.put(waiter)
            data = await waiter
            if not data:
                return
            yield data


def _settle(waiter: asyncio.Future[bytes], data: bytes, error: BaseException | None) -> None:
    if waiter.done():
        return
    if error is not None:
        waiter.set_exception(error)
    else:
        waiter.set_result(data)
