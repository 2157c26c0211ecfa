"""The client side of `streamfx.testing`: the bounded pipe of body chunks, `StreamClient`
(what a test reads), the errors, `open_response` and `capture_metrics`. See the
package docstring for the promises."""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterator, Sequence
from typing import Any, Final

from streamfx._core.util import aclose_iterator, cancel_and_wait
from streamfx._response.response import StreamResponse
from streamfx._sse.decoder import SSEDecoder
from streamfx._sse.event import ServerSentEvent
from streamfx.metrics import InMemoryMetrics, set_metrics

DEFAULT_TIMEOUT: Final = 5.0
"""Seconds a read (or the start of a response) may take before `StreamTimeout`."""


class StreamTimeout(TimeoutError):
    """A read did not finish within its timeout. `events` holds the events that the
    read got before it gave up (empty for a read of raw bytes)."""

    def __init__(self, message: str, events: list[ServerSentEvent]) -> None:
        super().__init__(message)
        self.events = events


class StreamAborted(Exception):
    """The body stopped without a clean end: the application (or the body) raised, or
    returned before its last body message. Its error, if any, is the ``__cause__``."""


class ClientDisconnected(OSError):
    """Raised by ``send`` after the test client disconnected (ASGI lets servers raise
    an `OSError` there)."""


class AppDidNotReturn(TimeoutError):
    """The application was still running `disconnect_timeout` seconds after the client
    disconnected; it was cancelled, and its finalizers may not have run."""


class _Pipe:
    """The body chunks between the stream's producer and the test: at most `capacity`
    chunks held; `put` waits for room and raises `ClientDisconnected` once closed."""

    def __init__(self, capacity: int) -> None:
        if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 1:
            raise ValueError(f"capacity must be a positive int, got {capacity!r}")
        self.capacity = capacity
        self.chunks: deque[bytes] = deque()
        self.ended = False  # the producer sent its last chunk
        self.closed = False  # the test client went away
        self.changed = asyncio.Event()

    async def put(self, chunk: bytes, *, last: bool = False) -> None:
        while len(self.chunks) >= self.capacity and not self.closed:
            self.changed.clear()
            await self.changed.wait()
        if self.closed:
            raise ClientDisconnected("the test client disconnected")
        if chunk:
            self.chunks.append(chunk)
        self.ended = last
        self.changed.set()

    def close(self) -> None:
        self.closed = True
        self.changed.set()


class StreamClient:
    """One response as the test sees it: `status`, `headers`, and its body as bytes or
    as Server-Sent Events. Made by `connect` and `open_response`."""

    def __init__(
        self, status: int, headers: list[tuple[str, str]], pipe: _Pipe, producer: asyncio.Task[Any]
    ) -> None:
        self.status = status
        self.headers = headers
        """``(name, value)`` pairs as sent, names in lower case."""
        self.decoder = SSEDecoder()
        """The decoder of the events read so far (``decoder.last_event_id``: the id to
        resume from)."""
        self._pipe = pipe
        self._producer = producer
        self._events: deque[ServerSentEvent] = deque()
        self._aborted = False  # StreamAborted was raised: the producer's error is reported

    def header(self, name: str) -> str | None:
        """The first value of header `name` (case-insensitive), or None."""
        lowered = name.lower()
        return next((value for key, value in self.headers if key == lowered), None)

    @property
    def ended(self) -> bool:
        """True once the body ended cleanly and everything in it was read."""
        return self._pipe.ended and not self._pipe.chunks

    async def chunk(self, *, within: float = DEFAULT_TIMEOUT) -> bytes | None:
        """The next body chunk, or None at the end of the body (raw bytes: events
        already decoded by `events` are not given again)."""
        try:
            async with asyncio.timeout(within):
                return await self._next_chunk()
        except TimeoutError:
            raise StreamTimeout(f"no body chunk within {within} s", []) from None

    async def body(self, *, within: float = DEFAULT_TIMEOUT) -> bytes:
        """The rest of the body, for a body that ends (an export, a download)."""
        chunks: list[bytes] = []
        try:
            async with asyncio.timeout(within):
                while (chunk := await self._next_chunk()) is not None:
                    chunks.append(chunk)
        except TimeoutError:
            size = sum(map(len, chunks))
            raise StreamTimeout(
                f"the body did not end within {within} s ({size} bytes)", []
            ) from None
        return b"".join(chunks)

    async def events(
        self,
        count: int | None = None,
        *,
        until: Callable[[ServerSentEvent], bool] | None = None,
        within: float = DEFAULT_TIMEOUT,
    ) -> list[ServerSentEvent]:
        """The next events: `count` of them, up to and including the first that
        `until` accepts, or all until the body ends, whichever comes first.

        Raises `StreamTimeout` (with the events read so far) when `within` seconds
        pass first, and `StreamAborted` when the body breaks off.
        """
        if count is not None and count < 0:
            raise ValueError(f"count must be >= 0, got {count}")
        got: list[ServerSentEvent] = []
        try:
            async with asyncio.timeout(within):
                while count is None or len(got) < count:
                    event = await self._next_event()
                    if event is None:
                        break
                    got.append(event)
                    if until is not None and until(event):
                        break
        except TimeoutError:
            wanted = f"{count} events" if count is not None else "the end of the events"
            if until is not None:
                wanted = "an event that `until` accepts"
            raise StreamTimeout(
                f"got {len(got)} events in {within} s while waiting for {wanted}", got
            ) from None
        return got

    async def _next_event(self) -> ServerSentEvent | None:
        while not self._events:
            chunk = await self._next_chunk()
            if chunk is None:
                return None
            self._events.extend(self.decoder.feed(chunk))
        return self._events.popleft()

    async def _next_chunk(self) -> bytes | None:
        pipe = self._pipe
        while not pipe.chunks:
            if pipe.ended:
                return None
            if self._producer.done():
                self._aborted = True
                error = _error_of(self._producer)
                raise StreamAborted("the body stopped without a clean end") from error
            pipe.changed.clear()
            await pipe.changed.wait()
        chunk = pipe.chunks.popleft()
        pipe.changed.set()  # room for the producer
        return chunk


@contextlib.asynccontextmanager
async def open_response(
    response: StreamResponse,
    *,
    method: str = "GET",
    headers: Sequence[tuple[str, str]] = (),
    capacity: int = 16,
) -> AsyncIterator[StreamClient]:
    """Read a `StreamResponse` directly, as an adapter would serve it to a request with
    `method` and `headers` (``for_request``), but without a server or an adapter.

    Leaving the block cancels the task that pulls the body and waits for it, so the
    body is closed and its finalizers have run.
    """
    resolved = response.for_request(method, headers)
    pipe = _Pipe(capacity)
    producer = asyncio.create_task(_pull(resolved.body, pipe))
    headers_sent = [(name.lower(), value) for name, value in resolved.headers]
    client = StreamClient(resolved.status, headers_sent, pipe, producer)
    try:
        yield client
    finally:
        pipe.close()
        await _stop(producer)
    _raise_unreported(client, producer)


@contextlib.contextmanager
def capture_metrics() -> Iterator[InMemoryMetrics]:
    """Install a fresh `InMemoryMetrics` as the process-wide hook for the block, then
    put the previous hook back. Streams started inside the block report to it."""
    metrics = InMemoryMetrics()
    previous = set_metrics(metrics)
    try:
        yield metrics
    finally:
        set_metrics(previous)


async def _pull(body: AsyncIterable[bytes], pipe: _Pipe) -> None:
    iterator = aiter(body)
    try:
        async for chunk in iterator:
            await pipe.put(chunk)
        await pipe.put(b"", last=True)
    finally:
        pipe.changed.set()
        await aclose_iterator(iterator)


async def _stop(task: asyncio.Task[Any]) -> None:
    """Cancel `task` and wait until it has finished (its cleanup has run); its error,
    if it had one, is kept for `_error_of`."""
    await cancel_and_wait([task])


def _error_of(task: asyncio.Task[Any]) -> BaseException | None:
    """The error `task` ended with (None when it returned or was cancelled)."""
    return None if task.cancelled() else task.exception()


def _raise_unreported(client: StreamClient, task: asyncio.Task[Any]) -> None:
    """Raise the producer's error unless the test already got it as `StreamAborted`."""
    error = _error_of(task)
    if error is not None and not client._aborted:
        raise error
