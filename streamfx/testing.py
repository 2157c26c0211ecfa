"""Testing streams in process: read an endless stream, stop when you have seen enough.

Why this exists: the usual test clients wait for a response body to end, and an SSE
body never ends. Starlette's ``TestClient`` gets the first event, then hangs on close;
httpx's ``ASGITransport`` collects the whole body before it returns anything. So this
module is its own small ASGI client, written for streams (no server, no socket, no
test framework: it imports the standard library and streamfx only).

- `connect(app, path)`: runs any ASGI application (Starlette, FastAPI, Litestar, a
  bare ``to_asgi(...)``) in a task with one HTTP request, and yields a `StreamClient`
  once the application has started its response (``status``, ``headers``).
- `open_response(response)`: the same for a `StreamResponse` you built, without any
  adapter: its body is pulled in a task (after ``for_request(method, headers)``).
- `capture_metrics()`: installs an `InMemoryMetrics` hook for the duration of a
  ``with`` block, so a test can assert on what the streams reported.

What the client promises:

- Reading is bounded in time and in memory. Each read takes `within=` (seconds) and
  raises `StreamTimeout` (a `TimeoutError` carrying what it read) when it passes; the
  stream stays usable. At most `capacity` body chunks wait to be read: past that the
  application's ``send`` blocks, as it would on a slow socket (backpressure).
- `StreamClient.events` stops after `count` events, at the first event `until`
  accepts (included), or at the end of the body, whichever comes first. Events are
  decoded by `SSEDecoder`; comments (heartbeats) are not events.
- Leaving the ``async with`` block disconnects, however it is left. For an ASGI
  application: ``receive()`` answers ``http.disconnect`` and a ``send()`` raises
  `ClientDisconnected` (an `OSError`, as the ASGI spec lets a server do), then the
  block waits up to `disconnect_timeout` for the application to return, so its
  finalizers have run when the block exits. One that does not return in time is
  cancelled and `AppDidNotReturn` is raised. For a `StreamResponse`: the task pulling
  the body is cancelled and awaited, which closes the body and runs its finalizers.
- An application that raises is not hidden: before the response starts, its error is
  raised from `connect`; after, reading raises `StreamAborted` (what a real client sees
  as a broken connection) and leaving the block re-raises the error itself when
  nothing else is being raised.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import (
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterator,
    MutableMapping,
    Sequence,
)
from typing import Any, Final
from urllib.parse import unquote

from streamfx._core.util import aclose_iterator, cancel_and_wait
from streamfx._response.response import StreamResponse
from streamfx._sse.decoder import SSEDecoder
from streamfx._sse.event import ServerSentEvent
from streamfx.metrics import InMemoryMetrics, set_metrics

__all__ = [
    "DEFAULT_TIMEOUT",
    "AppDidNotReturn",
    "ClientDisconnected",
    "StreamAborted",
    "StreamClient",
    "StreamTimeout",
    "capture_metrics",
    "connect",
    "open_response",
]

Message = MutableMapping[str, Any]
ASGIApp = Callable[[Any, Any, Any], Awaitable[None]]
"""Any ASGI application, whatever its framework's own types for scope and messages."""

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
async def connect(
    app: ASGIApp,
    path: str = "/",
    *,
    method: str = "GET",
    headers: Sequence[tuple[str, str]] = (),
    body: bytes = b"",
    start_timeout: float = DEFAULT_TIMEOUT,
    disconnect_timeout: float = DEFAULT_TIMEOUT,
    capacity: int = 16,
) -> AsyncIterator[StreamClient]:
    """Send one request to the ASGI application `app` in process and yield its response
    once it has started (status and headers), within `start_timeout` seconds.

    `path` may carry a query string; `headers` are added after ``host: testserver``;
    `body` is the whole request body, sent in one message. See the module docstring for
    what leaving the block does (disconnect, wait for the application, re-raise its error).
    """
    pipe = _Pipe(capacity)
    # the status and headers, or None when the application returned without them
    started: asyncio.Future[tuple[int, list[tuple[str, str]]] | None] = (
        asyncio.get_running_loop().create_future()
    )
    request: list[Message] = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive() -> Message:
        if request:
            return request.pop()
        while not pipe.closed:
            pipe.changed.clear()
            await pipe.changed.wait()
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        if pipe.closed:
            raise ClientDisconnected("the test client disconnected")
        kind = message["type"]
        if kind == "http.response.start" and not started.done():
            raw = message.get("headers", [])
            decoded = [(k.decode("latin-1").lower(), v.decode("latin-1")) for k, v in raw]
            started.set_result((message["status"], decoded))
        elif kind == "http.response.body" and started.done() and not pipe.ended:
            more = message.get("more_body", False)
            await pipe.put(bytes(message.get("body", b"")), last=not more)
        else:
            raise RuntimeError(f"unexpected ASGI message {kind!r} at this point")

    async def run() -> None:
        try:
            await app(_http_scope(method, path, headers), receive, send)
        finally:
            pipe.changed.set()  # wake a reader: the application is done
            if not started.done():
                started.set_result(None)

    task = asyncio.create_task(run())
    try:
        status, response_headers = await _started(started, task, start_timeout)
    except BaseException:
        await _stop(task)
        _error_of(task)
        raise
    client = StreamClient(status, response_headers, pipe, task)
    try:
        yield client
    finally:
        pipe.close()
        await _wait_for_return(task, disconnect_timeout)
    _raise_unreported(client, task)


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


async def _started(
    started: asyncio.Future[tuple[int, list[tuple[str, str]]] | None],
    task: asyncio.Task[None],
    seconds: float,
) -> tuple[int, list[tuple[str, str]]]:
    await asyncio.wait({started}, timeout=seconds)
    if not started.done():
        raise StreamTimeout(f"the app did not start its response within {seconds} s", [])
    result = started.result()
    if result is not None:
        return result
    await asyncio.wait({task})  # it has returned or raised: only its last step is left
    if (error := _error_of(task)) is not None:
        raise error
    raise StreamAborted("the app returned without starting a response")


async def _stop(task: asyncio.Task[Any]) -> None:
    """Cancel `task` and wait until it has finished (its cleanup has run); its error,
    if it had one, is kept for `_error_of`."""
    await cancel_and_wait([task])


async def _wait_for_return(task: asyncio.Task[Any], seconds: float) -> None:
    """Wait up to `seconds` for the application to return after the disconnect; cancel
    it (and raise `AppDidNotReturn`) if it does not."""
    try:
        done, _ = await asyncio.wait({task}, timeout=seconds)
    except asyncio.CancelledError:
        await _stop(task)
        raise
    if not done:
        await _stop(task)
        _error_of(task)
        raise AppDidNotReturn(f"the app was still running {seconds} s after http.disconnect")


def _error_of(task: asyncio.Task[Any]) -> BaseException | None:
    """The error `task` ended with (None when it returned or was cancelled)."""
    return None if task.cancelled() else task.exception()


def _raise_unreported(client: StreamClient, task: asyncio.Task[Any]) -> None:
    """Raise the producer's error unless the test already got it as `StreamAborted`."""
    error = _error_of(task)
    if error is not None and not client._aborted:
        raise error


def _http_scope(method: str, path: str, headers: Sequence[tuple[str, str]]) -> Message:
    raw_path, _, query = path.partition("?")
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "method": method.upper(),
        "scheme": "http",
        "path": unquote(raw_path),
        "raw_path": raw_path.encode("latin-1"),
        "query_string": query.encode("latin-1"),
        "root_path": "",
        "headers": [(b"host", b"testserver")]
        + [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
        "extensions": {},
        "state": {},
    }
