"""`PartStream`: the parts of a ``multipart/form-data`` body, pulled as the caller asks.

Made by `streamfx.parse_multipart` (`streamfx._upload.multipart`, which checks the
arguments); the framing is scanned by `streamfx._upload.framing`. What this module adds
is the async, bounded hand-over between the request body and the caller, the limit on
the whole body, the content sniffing hook, fairness to the event loop, and the metrics.

How data moves (pull-driven, no task):

- The body is pulled only when the caller asks for the next part or the next chunk of
  a part and the scanner needs more bytes. A body chunk is fed to the scanner in slices
  of at most 64 KiB, and the scanner returns one event per call (a part, a piece of
  content, the end of a part). So everything held at once is one body chunk plus a few
  bytes of an unfinished line, however large the upload, and a slow consumer slows the
  reading of the body: the ``"suspend"`` policy of the upload default, with the
  tightest buffer possible.
- Why no producer task and `Channel` here: the scanner is synchronous, so a task would
  only read ahead into a buffer while adding a task switch per chunk and a task to
  cancel. Servers already buffer the socket; reading the body on demand keeps memory
  flat and leaves nothing to clean up but the body itself.
- Fairness: a body that never makes the caller wait (an in-memory body, a fast client
  on a fast network, thousands of tiny parts in one chunk) would otherwise keep the
  event loop to itself. Every few events the stream checks the clock and, if it has not
  let the loop run for `YIELD_INTERVAL` (2 ms), awaits ``asyncio.sleep(0)``: no single
  stretch of parsing holds the loop longer than that plus one event's work.

Limits (see `parse_multipart`) are checked as the bytes arrive, before anything is
buffered, and the error comes before the rest of the body is read.

Errors found in the body (`UploadError`) are raised in order: the caller first gets
what was parsed before the fault, then the error, and the body is never read again.
So for any way of splitting the same body into chunks, the caller sees the same parts,
the same content and the same error.

Metrics (kind ``"upload"``, to `streamfx.metrics.get_metrics()` unless ``metrics=`` is
given): ``stream_opened`` when the caller first asks for a part; ``items_sent`` with 1
item for each part handed to the caller and with the byte count of each body chunk
read (the request body's bytes, framing included); ``stream_closed`` exactly once, when
the stream is closed, with the time since it opened and the outcome: ``"completed"``
(the closing boundary was reached and the caller asked past the last part),
``"error"`` (an `UploadError`, a failing body or a failing sniff hook ended it) or
``"closed"`` (the caller stopped early, or the task reading it was cancelled). A stream
closed before it was read reports nothing.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterable, Callable
from types import TracebackType
from typing import Final

from streamfx._core.util import aclose_iterator
from streamfx._upload.errors import MalformedUpload, UnsupportedMediaType, UploadTooLarge, shown
from streamfx._upload.framing import MESSAGE_END, NEED_DATA, PART_END, Framing
from streamfx._upload.limits import Limits
from streamfx._upload.part import Part
from streamfx.metrics import MetricsHook, Outcome, get_metrics, guarded

FEED_SIZE: Final = 64 * 1024
"""The most body bytes fed to the scanner at once."""

SNIFF_SIZE: Final = 2048
"""How many first bytes of a file the ``sniff`` hook is given (fewer if the file is
shorter): enough for every signature libmagic and the ``filetype`` package check."""

YIELD_INTERVAL: Final = 0.002
"""The longest stretch, in seconds, the stream parses without letting the loop run."""

_CHECK_EVERY: Final = 16  # events between two looks at the clock

KIND: Final = "upload"
"""The stream kind uploads report to the metrics hook."""

Sniff = Callable[[bytes, Part], bool]
"""``sniff(first_bytes, part) -> bool``: True accepts the file, False refuses it (415)."""


class PartStream:
    """The async iterator of `Part` returned by `parse_multipart` (see there)."""

    def __init__(
        self,
        body: AsyncIterable[bytes],
        boundary: bytes,
        limits: Limits,
        allowed_types: tuple[str, ...] | None = None,
        *,
        sniff: Sniff | None = None,
        name: str = "",
        metrics: MetricsHook | None = None,
    ) -> None:
        self._framing = Framing(boundary, limits, allowed_types, self._read_part)
        self._body = aiter(body)
        self._max_size = limits.max_size
        self._sniff = sniff
        self._held: list[object] = []  # events taken out for the sniff hook, to give back
        self._chunk = b""
        self._offset = 0
        self._received = 0
        self._over_size = False
        self._current: Part | None = None
        self._error: BaseException | None = None
        self._closed = False
        self._busy = False
        self._countdown = _CHECK_EVERY
        self._yielded_at = time.monotonic()
        self._name = name
        self._metrics = guarded(metrics if metrics is not None else get_metrics())
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
            if current._whole is not None:
                current._state = "skipped" if current._whole else "done"
                current._whole = None
            else:
                while (event := await self._next_event()) is not PART_END:
                    current._state = "skipped"
                if current._state == "open":
                    current._state = "done"
        event = self._event_now()
        if event is NEED_DATA:
            event = await self._next_event()
        if event is MESSAGE_END:
            self._outcome = "completed"
            await self.aclose()
            raise StopAsyncIteration
        if not isinstance(event, Part):  # pragma: no cover - the scanner ends parts first
            raise AssertionError(event)
        self._current = event
        if self._sniff is not None and event.raw_filename is not None:
            await self._check_sniff(event)
        self._metrics.items_sent(KIND, self._name, 1, 0)
        return event

    async def _read_part(self, part: Part) -> bytes:
        """The next chunk of `part`'s content (`Part.__anext__`)."""
        if part._state == "open":
            if self._closed and self._error is None:
                part._state = "closed"
                raise RuntimeError(f"the upload was closed before part {part.name!r} was read")
            whole = part._whole
            if whole is not None and self._error is None:
                part._whole = None
                part._state = "done"
                if whole:
                    return whole
                raise StopAsyncIteration
            event = self._event_now()
            if event is NEED_DATA:
                event = await self._next_event()
            if event is PART_END:
                part._state = "done"
                raise StopAsyncIteration
            return event  # type: ignore[return-value]  # content, the only other event here
        if part._state == "done":
            raise StopAsyncIteration
        if part._state == "skipped":
            raise RuntimeError(
                f"part {part.name!r} was skipped: read a part before asking for the next one"
            )
        raise RuntimeError(f"the upload was closed before part {part.name!r} was read")

    async def aclose(self) -> None:
        """Stop: close the body (once) and report the stream closed (once, if it was
        opened). Later reads of unfinished parts raise."""
        if self._closed:
            return
        self._closed = True
        self._countdown = 0
        self._held.clear()
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

    # -- the sniff hook ----------------------------------------------------------

    async def _check_sniff(self, part: Part) -> None:
        """Call the sniff hook with the first `SNIFF_SIZE` bytes of file `part`, then
        hold those events back for the caller; a refusal fails the stream."""
        assert self._sniff is not None
        taken: list[object] = []
        if part._whole is not None:  # the whole content is here, kept by the part
            first = part._whole[:SNIFF_SIZE]
        else:
            size = 0
            while size < SNIFF_SIZE:
                event = await self._next_event()
                taken.append(event)
                if event is PART_END:
                    break
                assert isinstance(event, bytes)
                size += len(event)
            first = b"".join(e for e in taken if isinstance(e, bytes))[:SNIFF_SIZE]
        try:
            accepted = self._sniff(first, part)
            if not accepted:
                raise UnsupportedMediaType(
                    f"the content of file {shown(part.name)} does not match an accepted type"
                )
        except Exception as exc:
            await self._fail(exc)
            raise
        if taken:
            self._held = taken
            self._countdown = 0

    # -- pulling the body --------------------------------------------------------

    def _event_now(self) -> object:
        """The scanner's next event if it can be had without awaiting anything, else
        `NEED_DATA`: then the caller awaits `_next_event`, which gets it. An error of the
        scanner is recorded (the stream fails) and `NEED_DATA` returned, so that
        `_next_event` closes the body and raises it: the one place a read fails.

        `_countdown` is zeroed whenever the stream is anything but plainly reading (an
        event held back, an error, closed, another task awaiting the body): then this
        always defers to `_next_event`, which checks each of those."""
        if self._countdown > 1:
            self._countdown -= 1
            try:
                return self._framing.next_event()
            except Exception as exc:
                self._countdown = 0
                self._error = exc
                self._outcome = "error"
        return NEED_DATA

    async def _next_event(self) -> object:
        """The next event of the scanner, pulling the body only when it needs bytes.

        An `UploadError` is raised after the events parsed before it (so what a caller
        receives does not depend on how the body was chunked); any other error from the
        body is raised at once. Either way the stream is failed and the body closed.
        """
        if self._held:
            return self._held.pop(0)
        if self._error is not None:
            await self.aclose()
            raise self._error
        if self._busy:
            raise RuntimeError("the upload is already being read by another task")
        try:
            self._countdown -= 1
            if self._countdown <= 0:
                await self._let_the_loop_run()
            event = self._framing.next_event()
        except BaseException as exc:
            await self._fail(exc)
            raise
        if event is NEED_DATA:
            event = await self._pull()
        return event

    async def _pull(self) -> object:
        """Feed the scanner until it has an event; fail the stream on any error."""
        self._busy = True
        self._countdown = 0
        try:
            framing = self._framing
            event: object = NEED_DATA
            while event is NEED_DATA:
                await self._feed()
                event = framing.next_event()
        except BaseException as exc:
            self._busy = False
            await self._fail(exc)
            raise
        self._busy = False
        return event

    async def _let_the_loop_run(self) -> None:
        """Every `_CHECK_EVERY` events: if the loop has not run for `YIELD_INTERVAL`,
        let it run once."""
        if time.monotonic() - self._yielded_at >= YIELD_INTERVAL:
            self._busy = True
            try:
                await asyncio.sleep(0)
            finally:
                self._busy = False
            self._yielded_at = time.monotonic()
            if self._closed:
                raise RuntimeError("the upload was closed while it was being read")
        self._countdown = _CHECK_EVERY

    async def _fail(self, exc: BaseException) -> None:
        """Fail the stream with `exc` (a cancellation becomes a `RuntimeError` for later
        reads) and close the body."""
        self._countdown = 0
        if self._error is None:
            if isinstance(exc, Exception):
                self._error = exc
                self._outcome = "error"
            else:
                self._error = RuntimeError("reading the upload was interrupted")
        self._held.clear()
        await self.aclose()

    async def _feed(self) -> None:
        """Give the scanner the next slice (at most `FEED_SIZE` bytes) of the body."""
        if self._closed:
            raise RuntimeError("the upload was closed while it was being read")
        chunk = self._chunk
        offset = self._offset
        if offset >= len(chunk):
            chunk = await self._receive()
            offset = 0
        if offset == 0 and len(chunk) <= FEED_SIZE:
            piece = chunk
        else:
            piece = chunk[offset : offset + FEED_SIZE]
        self._chunk = chunk
        self._offset = offset + len(piece)
        self._framing.feed(piece)

    async def _receive(self) -> bytes:
        """The next body chunk, cut at `max_size`: the scanner sees at most `max_size`
        bytes, and the bytes after them are refused without being scanned."""
        if self._over_size:
            most = self._max_size
            raise UploadTooLarge(
                f"the upload is larger than {most} bytes (max_size={most})",
                limit="max_size",
                value=most,
            )
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


__all__ = ["KIND", "PartStream", "Sniff"]
