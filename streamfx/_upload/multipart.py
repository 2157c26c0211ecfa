"""`parse_multipart`: a ``multipart/form-data`` request body as a stream of parts.

The framing is parsed by python-multipart's streaming `MultipartParser` (imported here,
lazily: ``import streamfx`` works without it). What this module adds is the async,
bounded, limit-checking hand-over between the request body and the caller.

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
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterable, Iterable
from types import TracebackType
from typing import TYPE_CHECKING, Final

from streamfx._core.util import aclose_iterator
from streamfx._upload.errors import (
    MalformedUpload,
    UnsupportedMediaType,
    UploadError,
    UploadTooLarge,
)
from streamfx._upload.part import Part, check_allowed_types, describe_part

if TYPE_CHECKING:
    from python_multipart import MultipartParser

FEED_SIZE: Final = 64 * 1024
"""The most bytes fed to the parser at once: the bound on content parsed but not read."""

MAX_HEADER_BYTES: Final = 64 * 1024
"""The most header bytes one part may have (python-multipart limits each line too)."""

MAX_BOUNDARY_BYTES: Final = 256
"""RFC 2046 asks for at most 70; python-multipart accepts 256, and so does this module."""

_END: Final = object()
Event = Part | bytes | None  # a part's headers are complete / content / the part ended


def parse_multipart(
    body: AsyncIterable[bytes],
    content_type: str | bytes | None,
    *,
    max_size: int,
    max_part_size: int,
    max_parts: int,
    allowed_types: Iterable[str] | None = None,
) -> PartStream:
    """Parse a ``multipart/form-data`` request `body` into an async iterator of `Part`.

    `content_type` is the request's ``Content-Type`` header (it carries the boundary).
    Parts come in order; read each part's content (``async for chunk in part``) before
    asking for the next part, or it is skipped. `allowed_types` (patterns such as
    ``"image/png"``, ``"image/*"``, ``"*/*"``) restricts the content types of *file*
    parts (parts with a filename); plain fields are not checked.

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
        _check_limit("max_size", max_size),
        _check_limit("max_part_size", max_part_size),
        _check_limit("max_parts", max_parts),
    )
    allowed = check_allowed_types(allowed_types)
    boundary = _boundary(content_type)
    return PartStream(body, boundary, *limits, allowed)


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
    ) -> None:
        from python_multipart import MultipartParser
        from python_multipart.exceptions import FormParserError

        self._body = aiter(body)
        self._max_size = max_size
        self._max_part_size = max_part_size
        self._max_parts = max_parts
        self._allowed_types = allowed_types
        self._parse_error = FormParserError
        try:
            self._parser: MultipartParser = MultipartParser(
                boundary,
                {
                    "on_part_begin": self._on_part_begin,
                    "on_header_field": self._on_header_field,
                    "on_header_value": self._on_header_value,
                    "on_header_end": self._on_header_end,
                    "on_headers_finished": self._on_headers_finished,
                    "on_part_data": self._on_part_data,
                    "on_part_end": self._on_part_end,
                    "on_end": self._on_end,
                },
            )
        except FormParserError as exc:
            raise MalformedUpload(f"unusable multipart boundary: {exc}") from exc
        self._events: deque[Event] = deque()
        self._chunk = b""
        self._offset = 0
        self._received = 0
        self._over_size = False
        self._parts = 0
        self._part_size = 0
        self._header_bytes = 0
        self._field = bytearray()
        self._value = bytearray()
        self._headers: list[tuple[bytes, bytes]] = []
        self._ended = False
        self._current: Part | None = None
        self._error: BaseException | None = None
        self._closed = False
        self._busy = False

    # -- the caller's side -------------------------------------------------------

    def __aiter__(self) -> PartStream:
        return self

    async def __anext__(self) -> Part:
        """The next part; what is left of the current one is read and dropped first."""
        if self._closed and self._error is None:
            raise StopAsyncIteration
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
            await self.aclose()
            raise StopAsyncIteration
        assert isinstance(event, Part), event
        self._current = event
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
        """Stop: close the body (once). Later reads of unfinished parts raise."""
        if self._closed:
            return
        self._closed = True
        self._events.clear()
        await aclose_iterator(self._body)

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
        if not events and self._error is None and not self._ended:
            if self._busy:
                raise RuntimeError("the upload is already being read by another task")
            self._busy = True
            try:
                await self._pull()
            except BaseException as exc:
                self._error = (
                    exc
                    if isinstance(exc, Exception)
                    else RuntimeError("reading the upload was interrupted")
                )
                events.clear()
                await self.aclose()
                raise
            finally:
                self._busy = False
        if events:
            return events.popleft()
        if self._error is not None:
            await self.aclose()
            raise self._error
        return _END

    async def _pull(self) -> None:
        """Feed the parser until it has produced an event, the message has ended or an
        `UploadError` was found (stored in `_error`; the parser is not fed again)."""
        events = self._events
        parser = self._parser
        while not events and not self._ended:
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
                parser.write(piece)
            except UploadError as exc:
                self._error = exc
                return
            except self._parse_error as exc:
                error = MalformedUpload(f"malformed multipart body: {exc}")
                error.__cause__ = exc
                self._error = error
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
        return chunk

    # -- parser callbacks (run inside parser.write) --------------------------------

    def _on_part_begin(self) -> None:
        self._parts += 1
        if self._parts > self._max_parts:
            raise UploadTooLarge(f"the upload has more than {self._max_parts} parts")
        self._headers = []
        self._header_bytes = 0
        self._part_size = 0

    def _on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._count_header(end - start)
        self._field += data[start:end]

    def _on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._count_header(end - start)
        self._value += data[start:end]

    def _count_header(self, size: int) -> None:
        self._header_bytes += size
        if self._header_bytes > MAX_HEADER_BYTES:
            raise MalformedUpload(f"a part's headers are larger than {MAX_HEADER_BYTES} bytes")

    def _on_header_end(self) -> None:
        self._headers.append((bytes(self._field), bytes(self._value)))
        self._field.clear()
        self._value.clear()

    def _on_headers_finished(self) -> None:
        name, filename, content_type, headers = describe_part(self._headers, self._allowed_types)
        self._events.append(Part(self._read_part, name, filename, content_type, headers))

    def _on_part_data(self, data: bytes, start: int, end: int) -> None:
        room = self._max_part_size - self._part_size
        if end - start > room:
            if room:
                self._events.append(data[start : start + room])
            raise UploadTooLarge(f"a part is larger than {self._max_part_size} bytes")
        self._part_size += end - start
        self._events.append(data[start:end])

    def _on_part_end(self) -> None:
        self._events.append(None)

    def _on_end(self) -> None:
        self._ended = True


def _check_limit(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be a positive int, not {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{name} must be a positive int, got {value}")
    return value


def _boundary(content_type: str | bytes | None) -> bytes:
    from python_multipart.multipart import parse_options_header

    if isinstance(content_type, bytes):
        content_type = content_type.decode("latin-1")
    media, params = parse_options_header(content_type)
    media = media.strip().lower()  # python-multipart 0.0.20 keeps the case as sent
    if media != b"multipart/form-data":
        sent = media.decode("latin-1") if media else "no Content-Type"
        raise UnsupportedMediaType(f"expected multipart/form-data, got {sent}")
    boundary = params.get(b"boundary")
    if not boundary:
        raise MalformedUpload("the multipart/form-data Content-Type has no boundary")
    if len(boundary) > MAX_BOUNDARY_BYTES:
        raise MalformedUpload(f"the multipart boundary is longer than {MAX_BOUNDARY_BYTES} bytes")
    return boundary
