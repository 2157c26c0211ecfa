"""`parse_multipart`: a ``multipart/form-data`` request body as a stream of parts.

The framing is parsed by python-multipart's streaming `MultipartParser`, wrapped with
the per-part limits in `streamfx._upload.framing`. What this module adds is the async,
bounded hand-over between the request body and the caller, the limit on the whole
body, and the metrics.

How data moves (pull-driven, no task):

- The body is pulled only when the caller asks for the next part or the next chunk of
  a part and nothing parsed is waiting. One body chunk is fed to the parser in slices
  of at most 64 KiB; the parser's callbacks append events (a new part, a piece of
  content, the end of a part) to a deque. The caller takes events one at a time; only
  when the deque is empty is the next slice fed. So everything held at once is one body
  chunk plus the events of one slice (at most 64 KiB of content), however large the
  upload, and a slow consumer slows the reading of the body: the ``"suspend"`` policy
  of the upload default, with the tightest buffer possible. A slice that spans several
  parts is fine: its events simply wait in order.
- Why no producer task and `Channel` here: the parser is synchronous, so a task would
  only read ahead into a buffer while adding a task switch per chunk and a task to
  cancel. Servers already buffer the socket; reading the body on demand keeps memory
  flat and leaves nothing to clean up but the body itself.

Limits are checked as the bytes arrive, and `UploadTooLarge` comes before the rest of
the body is read: the parser is fed at most ``max_size`` body bytes (what follows the
closing boundary is never read, so it does not count), a part's content is
cut after ``max_part_size`` bytes, and the part after ``max_parts`` is refused as it
begins. Limits apply to parts the caller skips as well.

Errors found in the body (`UploadError`) are raised in order: the caller first gets
what was parsed before the fault, then the error, and the parser is never fed again.
So for any way of splitting the same body into chunks, the caller sees the same parts,
the same content and the same error.

Metrics (kind ``"upload"``, to `streamfx.metrics.get_metrics()` unless ``metrics=`` is
given): ``stream_opened`` when the caller first asks for a part; ``items_sent`` with 1
item for each part handed to the caller and with the byte count of each body chunk
read (the request body's bytes, framing included); ``stream_closed`` exactly once, when
the stream is closed, with the time since it opened and the outcome: ``"completed"``
(the closing boundary was reached and the caller asked past the last part),
``"error"`` (an `UploadError` or a failing body ended it) or ``"closed"`` (the caller
stopped early, or the task reading it was cancelled). A stream closed before it was
read reports nothing.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterable, Iterable
from types import TracebackType
from typing import Final

from streamfx._core.util import aclose_iterator
from streamfx._upload.errors import MalformedUpload, UploadError, UploadTooLarge
from streamfx._upload.framing import Framing, boundary, check_limit
from streamfx._upload.part import Part, check_allowed_types
from streamfx.metrics import MetricsHook, Outcome, get_metrics

FEED_SIZE: Final = 64 * 1024
"""The most bytes fed to the parser at once: the bound on content parsed but not read."""

KIND: Final = "upload"
"""The stream kind uploads report to the metrics hook."""

_END: Final = object()


def parse_multipart(
    body: AsyncIterable[bytes],
    content_type: str | bytes | None,
    *,
    max_size: int,
    max_part_size: int,
    max_parts: int,
    allowed_types: Iterable[str] | None = None,
    name: str = "",
    metrics: MetricsHook | None = None,
) -> PartStream:
    """Parse a ``multipart/form-data`` request `body` into an async iterator of `Part`.

    `content_type` is the request's ``Content-Type`` header (it carries the boundary).
    Parts come in order; read each part's content (``async for chunk in part``) before
    asking for the next part, or it is skipped. `allowed_types` (patterns such as
    ``"image/png"``, ``"image/*"``, ``"*/*"``) restricts the content types of *file*
    parts (parts with a filename); plain fields are not checked. `name` (a route, say)
    labels the upload's metrics, reported to `metrics` or else to the process-wide hook
    (see the module docstring).

    Checked now, before the body is touched: the limits must be positive ints
    (`TypeError`/`ValueError`); `UnsupportedMediaType` if `content_type` is not
    ``multipart/form-data``; `MalformedUpload` if it has no usable boundary. If this
    call raises, `body` is left untouched and unclosed.

    While iterating: `UploadTooLarge` (413) as soon as the body passes `max_size` bytes,
    a part's content passes `max_part_size` bytes, or a part beyond `max_parts` begins;
    `UnsupportedMediaType` (415) for a file part of a type not allowed; `MalformedUpload`
    (400) for broken framing or part headers, or a body that ends before the closing
    boundary (a truncated upload never looks complete). After an error the body is
    closed and every later read raises the same error.

    The returned stream closes the body (``aclose()``) when it ends, fails or is closed:
    use ``async with parse_multipart(...) as parts:`` or call ``await parts.aclose()``
    when stopping early. It starts no task.

    Example (Starlette; any async iterable of the body's bytes will do)::

        async with parse_multipart(
            request.stream(), request.headers.get("content-type"),
            max_size=100 << 20, max_part_size=50 << 20, max_parts=20,
            allowed_types=["image/*"],
        ) as parts:
            async for part in parts:
                if part.filename is None:
                    fields[part.name] = (await part.read()).decode()
                else:
                    async for chunk in part:
                        await sink.write(chunk)
    """
    try:
        import python_multipart  # noqa: F401
    except ImportError as exc:
        raise ImportError(
            "parse_multipart needs python-multipart: pip install 'streamfx[multipart]'"
        ) from exc
    limits = (
        check_limit("max_size", max_size),
        check_limit("max_part_size", max_part_size),
        check_limit("max_parts", max_parts),
    )
    allowed = check_allowed_types(allowed_types)
    return PartStream(body, boundary(content_type), *limits, allowed, name=name, metrics=metrics)


class PartStream:
    """The async iterator of `Part` returned by `parse_multipart` (see there)."""

    def __init__(
        self,
        body: AsyncIterable[bytes],
        boundary: bytes,
        max_size: int,
        max_part_size: int,
        max_parts: int,
        allowed_types: tuple[str, ...] | None,
        *,
        name: str = "",
        metrics: MetricsHook | None = None,
    ) -> None:
        self._framing = Framing(boundary, max_part_size, max_parts, allowed_types, self._read_part)
        self._events = self._framing.events
        self._body = aiter(body)
        self._max_size = max_size
        self._chunk = b""
        self._offset = 0
        self._received = 0
        self._over_size = False
        self._current: Part | None = None
        self._error: BaseException | None = None
        self._closed = False
        self._busy = False
        self._name = name
        self._metrics = metrics if metrics is not None else get_metrics()
        self._opened_at: float | None = None  # set when the metrics hook is told it opened
        self._outcome: Outcome = "closed"

    # -- the caller's side -------------------------------------------------------

    def __aiter__(self) -> PartStream:
        return self

    async def __anext__(self) -> Part:
        """The next part; what is left of the current one is read and dropped first."""
        if self._closed and self._error is None:
            raise StopAsyncIteration
        if self._opened_at is None and not self._closed:
            self._metrics.stream_opened(KIND, self._name)
            self._opened_at = time.monotonic()
        current = self._current
        if current is not None and current._state == "open":
            while (event := await self._next_event()) is not None:
                if event is _END:  # pragma: no cover - the parser ends parts first
                    break
                current._state = "skipped"
            if current._state == "open":
                current._state = "done"
        events = self._events
        event = events.popleft() if events else await self._next_event()
        if event is _END:
            self._outcome = "completed"
            await self.aclose()
            raise StopAsyncIteration
        assert isinstance(event, Part), event
        self._current = event
        self._metrics.items_sent(KIND, self._name, 1, 0)
        return event

    async def _read_part(self, part: Part) -> bytes:
        """The next chunk of `part`'s content (`Part.__anext__`)."""
        if part._state == "open" and self._error is None and self._closed:
            part._state = "closed"
        state = part._state
        if state == "done":
            raise StopAsyncIteration
        if state == "skipped":
            raise RuntimeError(
                f"part {part.name!r} was skipped: read a part before asking for the next one"
            )
        if state == "closed":
            raise RuntimeError(f"the upload was closed before part {part.name!r} was read")
        events = self._events
        event = events.popleft() if events else await self._next_event()
        if event is None:
            part._state = "done"
            raise StopAsyncIteration
        assert isinstance(event, bytes), event
        return event

    async def aclose(self) -> None:
        """Stop: close the body (once) and report the stream closed (once, if it was
        opened). Later reads of unfinished parts raise."""
        if self._closed:
            return
        self._closed = True
        self._events.clear()
        try:
            await aclose_iterator(self._body)
        finally:
            if self._opened_at is not None:
                duration = time.monotonic() - self._opened_at
                self._metrics.stream_closed(KIND, self._name, duration, self._outcome)

    async def __aenter__(self) -> PartStream:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # -- pulling the body --------------------------------------------------------

    async def _next_event(self) -> object:
        """The next parsed event, pulling the body only if none is waiting.

        An `UploadError` found while parsing is raised after the events parsed before
        it (so what a caller receives does not depend on how the body was chunked);
        any other error from the body is raised at once.
        """
        events = self._events
        if not events and self._error is None and not self._framing.ended:
            if self._busy:
                raise RuntimeError("the upload is already being read by another task")
            self._busy = True
            try:
                await self._pull()
            except BaseException as exc:
                if isinstance(exc, Exception):
                    self._error = exc
                    self._outcome = "error"
                else:
                    self._error = RuntimeError("reading the upload was interrupted")
                events.clear()
                await self.aclose()
                raise
            finally:
                self._busy = False
        if events:
            return events.popleft()
        if self._error is not None:
            self._outcome = "error"
            await self.aclose()
            raise self._error
        return _END

    async def _pull(self) -> None:
        """Feed the parser until it has produced an event, the message has ended or an
        `UploadError` was found (stored in `_error`; the parser is not fed again)."""
        events = self._events
        framing = self._framing
        while not events and not framing.ended:
            if self._closed:
                raise RuntimeError("the upload was closed while it was being read")
            chunk = self._chunk
            offset = self._offset
            if offset >= len(chunk):
                try:
                    chunk = await self._receive()
                except UploadError as exc:
                    self._error = exc
                    return
                offset = 0
            if offset == 0 and len(chunk) <= FEED_SIZE:
                piece = chunk
            else:
                piece = chunk[offset : offset + FEED_SIZE]
            self._chunk = chunk
            self._offset = offset + len(piece)
            try:
                framing.write(piece)
            except UploadError as exc:
                self._error = exc
                return

    async def _receive(self) -> bytes:
        """The next body chunk, cut at `max_size`: the parser sees at most `max_size`
        bytes, and the bytes after them are refused without being parsed."""
        if self._over_size:
            raise UploadTooLarge(f"the upload is larger than {self._max_size} bytes")
        try:
            chunk = await anext(self._body)
        except StopAsyncIteration:
            raise MalformedUpload(
                "the body ended before the closing multipart boundary (truncated upload)"
            ) from None
        if not isinstance(chunk, bytes):
            if not isinstance(chunk, bytearray | memoryview):
                raise TypeError(f"the body must yield bytes, not {type(chunk).__name__}")
            chunk = bytes(chunk)
        room = self._max_size - self._received
        if len(chunk) > room:
            chunk = chunk[:room]
            self._over_size = True
        self._received += len(chunk)
        self._metrics.items_sent(KIND, self._name, 0, len(chunk))
        return chunk
