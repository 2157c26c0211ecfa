"""The framing of a ``multipart/form-data`` body: bytes in, events out, one at a time,
every per-part limit checked as the bytes are scanned.

`Framing` is a sans-I/O boundary scanner. `Framing.feed` gives it the next piece of the
body; `Framing.next_event` returns what that piece holds, one event per call: a `Part`
(its headers are complete and checked), ``bytes`` (a piece of its content, at most
`CHUNK_SIZE`), `PART_END`, `NEED_DATA` (feed the next piece) or `MESSAGE_END` (the
closing boundary was read; nothing after it is ever looked at). A part whose whole
content (within its limit and `CHUNK_SIZE`) is already in the piece comes with it in
`Part._whole`, and then no content event and no `PART_END` follow for it. It starts no task and
does work only when asked for an event, so the caller decides when to stop and let the
event loop run, even in the middle of a piece holding a thousand parts.

Why written here rather than taken from python-multipart or the `multipart` package
(see `streamfx._upload.multipart` for the measurements):

- speed: both cost more per part than all of streamfx's own work on a small field;
- every limit must fail with streamfx's error naming the parameter and its value, at
  points those parsers do not expose: the preamble, the kind of a part (file or field)
  before its first content byte, header lines as they arrive;
- one event per call lets the stream yield to the event loop between parts.

The scanning itself is the standard library's C ``bytes.find``: the message is
searched for the delimiter (CRLF, ``--``, boundary), never walked byte by byte, so a body
of CR/LF or of near-boundaries costs what any other body costs.

Rules (RFC 2046 section 5.1.1, RFC 7578), each breach an `UploadError` raised by
`next_event` after the events of the bytes before it:

- a preamble before the first boundary is skipped, up to ``max_preamble_size`` bytes;
  the boundary found in it other than at the start of a line is refused (RFC 2046 reads
  it as text, python-multipart as the first boundary: the two would see other parts);
- a boundary line is the delimiter followed by CRLF (another part) or ``--`` (the end);
  the delimiter followed by anything else, in the preamble or in content, is refused;
- header lines end in CRLF; a bare CR or LF, a NUL, a folded line or a name that is not
  a token is refused; at most ``max_headers`` lines of at most ``max_header_size``
  bytes each (a line is refused as soon as it passes the size, CRLF or not);
- at most ``max_parts`` parts (refused as the extra part begins), ``max_files`` files
  and ``max_fields`` fields (refused once the part's headers say which it is);
- a file's content is cut after ``max_file_size`` bytes and a field's after
  ``max_field_size``: the content up to the limit is returned, then the error.

The boundary of the request's ``Content-Type`` is checked here too (`boundary`): 1 to
70 printable ASCII characters (RFC 2046), never a `UnicodeError`.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Awaitable, Callable
from typing import Final

from streamfx._upload.errors import MalformedUpload, UnsupportedMediaType, UploadTooLarge, shown
from streamfx._upload.limits import Limits
from streamfx._upload.params import parse_params
from streamfx._upload.part import Part, describe_part, make_part

CHUNK_SIZE: Final = 64 * 1024
"""The most content bytes in one event."""

MAX_BOUNDARY_LENGTH: Final = 70
"""RFC 2046 section 5.1.1: a boundary is 1 to 70 characters."""

NEED_DATA: Final = object()
PART_END: Final = object()
MESSAGE_END: Final = object()

Event = Part | bytes | object

_TOKEN: Final = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_HEADER_NAME = re.compile(_TOKEN)
_KNOWN_HEADERS: Final = {
    b"Content-Disposition": b"content-disposition",
    b"Content-Type": b"content-type",
    b"content-disposition": b"content-disposition",
    b"content-type": b"content-type",
}
# The headers as browsers (and curl, httpx, requests, aiohttp) send them, read by one
# match instead of line by line: the same result as the general path (a property test
# checks it), which is taken for anything else, escapes and tabs included.
_QUOTED_TEXT = rb'[^"\\\x00-\x1f\x7f]*'
_BROWSER_HEADERS = re.compile(
    rb'Content-Disposition: (form-data; name="('
    + _QUOTED_TEXT
    + rb')"(?:; filename="('
    + _QUOTED_TEXT
    + rb')")?)(?:\r\nContent-Type: ('
    + _TOKEN
    + rb"/"
    + _TOKEN
    + rb"))?\r\n\r\n"
)
_BOUNDARY = re.compile(rb"[\x20-\x7e]{1,%d}" % MAX_BOUNDARY_LENGTH)


class Framing:
    """The scanner for one body (see the module docstring).

    `read` is handed to every `Part` it creates: it is how the part's content is read.
    After `next_event` raised, do not call it again.
    """

    __slots__ = (
        "_allowed_types",
        "_buffer",
        "_delimiter",
        "_fields",
        "_files",
        "_headers",
        "_in_file",
        "_limits",
        "_parts",
        "_position",
        "_read",
        "_room",
        "_skipped",
        "ended",
        "next_event",
    )

    def __init__(
        self,
        boundary: bytes,
        limits: Limits,
        allowed_types: tuple[str, ...] | None,
        read: Callable[[Part], Awaitable[bytes]],
    ) -> None:
        self._delimiter = b"\r\n--" + boundary
        self._limits = limits
        self._allowed_types = allowed_types
        self._read = read
        # The body is scanned as if it began with CRLF, so that a first boundary at its
        # very start and one after a preamble are found by the same search.
        self._buffer = b"\r\n"
        self._position = 0
        self._skipped = 0  # bytes skipped before the first boundary, that CRLF included
        self._parts = self._files = self._fields = 0
        self._headers: list[tuple[bytes, bytes]] = []
        self._room = 0  # content bytes the current part may still have
        self._in_file = False  # whether the current part is a file (or a field)
        self.ended = False
        """True once the closing boundary was read."""
        self.next_event: Callable[[], Event] = self._preamble
        """The next event (see the module docstring); raises the `UploadError` of the
        first rule the body breaks. (It is the method of the scanner's current state.)"""

    def feed(self, data: bytes) -> None:
        """Add the next piece of the body. Call only after `next_event` returned
        `NEED_DATA`: what was not scanned yet (a partial line or delimiter, a few bytes)
        is kept in front of it."""
        rest = len(self._buffer) - self._position
        self._buffer = self._buffer[self._position :] + data if rest else data
        self._position = 0

    # -- states: each is `next_event` while the scanner is in it -------------------------

    def _preamble(self) -> Event:
        buffer = self._buffer
        position = self._position
        delimiter = self._delimiter
        found = buffer.find(delimiter[2:], position)  # the boundary line, without its CRLF
        if found < 0:
            # keep what may be the start of a delimiter: the last bytes, unscanned
            skip_to = max(position, len(buffer) - len(delimiter) + 1)
        elif buffer[found - 2 : found] != b"\r\n":
            # python-multipart would take it for the first boundary, RFC 2046 for text
            raise MalformedUpload("the multipart boundary appears in the preamble, mid-line")
        else:
            skip_to = found - 2
        self._skipped += skip_to - position
        self._position = skip_to
        # Nothing skipped, or at least the scan's own leading CRLF: never 1 byte.
        if self._skipped - 2 > self._limits.max_preamble_size:
            raise self._too_large(
                "the preamble before the first boundary is longer than",
                " bytes",
                "max_preamble_size",
            )
        if found < 0:
            return NEED_DATA
        self._position = skip_to + len(delimiter)
        self.next_event = self._boundary_end
        return self._boundary_end()

    def _boundary_end(self) -> Event:
        """Just after a delimiter: CRLF begins a part, ``--`` ends the message."""
        buffer = self._buffer
        position = self._position
        if buffer.startswith(b"\r\n", position):
            return self._part_begins(buffer, position + 2)
        if buffer.startswith(b"--", position):
            self._position = position + 2
            self.ended = True
            self.next_event = self._message_end
            return MESSAGE_END
        tail = buffer[position:]
        if len(tail) < 2 and (b"\r\n".startswith(tail) or b"--".startswith(tail)):
            return NEED_DATA
        raise MalformedUpload("a multipart boundary is followed by something else than CRLF or --")

    def _part_begins(self, buffer: bytes, position: int) -> Event:
        self._parts += 1
        limits = self._limits
        if self._parts > limits.max_parts:
            raise self._too_large("the upload has more than", " parts", "max_parts")
        # Headers as browsers send them, within the limits: read by one match.
        browser = _BROWSER_HEADERS.match(buffer, position)
        if browser is not None and browser.end() - position <= limits.max_header_size:
            disposition, name, filename, content_type = browser.groups()
            if content_type is None:
                headers = [(b"content-disposition", disposition)]
            elif limits.max_headers > 1:
                headers = [(b"content-disposition", disposition), (b"content-type", content_type)]
            else:
                headers = []  # one header line too many: the general path says so
            if headers:
                self._position = browser.end()
                part = make_part(
                    name, filename, content_type, headers, self._allowed_types, self._read
                )
                return self._content_begins(part)
        self._position = position
        self._headers = []
        self.next_event = self._header_lines
        return self._header_lines()

    def _header_lines(self) -> Event:
        buffer = self._buffer
        position = self._position
        limits = self._limits
        headers = self._headers
        while True:
            end = buffer.find(b"\r\n", position)
            if end < 0:
                self._position = position
                # (the line so far may end in the CR of its CRLF)
                if len(buffer) - position > limits.max_header_size + 1:
                    raise self._too_large(
                        "a part's header line is longer than", " bytes", "max_header_size"
                    )
                return NEED_DATA
            if end == position:
                self._position = position + 2
                part = describe_part(headers, self._allowed_types, self._read)
                return self._content_begins(part)
            if end - position > limits.max_header_size:
                raise self._too_large(
                    "a part's header line is longer than", " bytes", "max_header_size"
                )
            if len(headers) == limits.max_headers:
                raise self._too_large("a part has more than", " header lines", "max_headers")
            headers.append(_header(buffer[position:end]))
            position = end + 2

    def _content_begins(self, part: Part) -> Part:
        limits = self._limits
        if part.raw_filename is None:
            self._fields += 1
            if self._fields > limits.max_fields:
                raise self._too_large("the upload has more than", " fields", "max_fields")
            room = limits.max_field_size
            self._in_file = False
        else:
            self._files += 1
            if self._files > limits.max_files:
                raise self._too_large("the upload has more than", " files", "max_files")
            room = limits.max_file_size
            self._in_file = True
        # A part whose whole content is already here, within its limit, carries it: no
        # content events and no PART_END for it (most fields, many small files).
        buffer = self._buffer
        position = self._position
        end = buffer.find(self._delimiter, position)
        if end >= 0 and end - position <= min(room, CHUNK_SIZE):
            part._whole = buffer[position:end]
            self._position = end + len(self._delimiter)
            self.next_event = self._boundary_end
            return part
        self._room = room
        self.next_event = self._content
        return part

    def _content(self) -> Event:
        buffer = self._buffer
        position = self._position
        found = buffer.find(self._delimiter, position)
        if found == position:
            return self._part_ends()
        if found < 0:
            end = self._partial_delimiter(position)
            if end == position:
                return NEED_DATA
        else:
            end = found
        if end - position > CHUNK_SIZE:
            end = position + CHUNK_SIZE
        elif end == found:
            self.next_event = self._part_ends  # the delimiter is next: no need to look again
        room = self._room
        if end - position > room:
            error = self._too_large_content()
            if not room:
                raise error
            self.next_event = functools.partial(_raise, error)
            end = position + room
        self._room = room - (end - position)
        self._position = end
        return buffer[position:end]

    def _part_ends(self) -> Event:
        self._position += len(self._delimiter)
        self.next_event = self._boundary_end
        return PART_END

    def _message_end(self) -> Event:
        return MESSAGE_END

    # -- helpers -----------------------------------------------------------------------

    def _partial_delimiter(self, position: int) -> int:
        """Where the bytes that may begin a delimiter start, at the end of the buffer
        (the buffer's length if none may): those are kept for the next piece."""
        buffer = self._buffer
        length = len(buffer)
        # The delimiter holds a CR only at its start (a boundary has no control
        # characters), so only the last CR can begin a partial delimiter.
        carriage = buffer.rfind(b"\r", max(position, length - len(self._delimiter) + 1))
        if carriage >= 0 and self._delimiter.startswith(buffer[carriage:]):
            return carriage
        return length

    def _too_large_content(self) -> UploadTooLarge:
        if self._in_file:
            return self._too_large("a file is larger than", " bytes", "max_file_size")
        return self._too_large("a field is larger than", " bytes", "max_field_size")

    def _too_large(self, before: str, after: str, limit: str) -> UploadTooLarge:
        """The error for passing `limit`: ``"<before> <value><after> (<name>=<value>)"``,
        named after the parameter the caller set it with."""
        name, value = self._limits.named(limit)
        return UploadTooLarge(f"{before} {value}{after} ({name}={value})", limit=name, value=value)


def _raise(error: UploadTooLarge) -> Event:
    raise error


def _header(line: bytes) -> tuple[bytes, bytes]:
    """A header line as ``(lower-case name, value)``, or `MalformedUpload`."""
    name, colon, value = line.partition(b":")
    if not colon:
        raise MalformedUpload("a part has a header line that is not 'name: value'")
    known = _KNOWN_HEADERS.get(name)
    if known is None:
        if not _HEADER_NAME.fullmatch(name):
            raise MalformedUpload("a part has a header line that is not 'name: value'")
        known = name.lower()
    if b"\r" in value or b"\n" in value or b"\x00" in value:
        raise MalformedUpload("a part's header has a CR, LF or NUL in its value")
    return known, value.strip(b" \t")


def boundary(content_type: str | bytes | None) -> bytes:
    """The boundary of a ``multipart/form-data`` ``Content-Type`` header.

    Raises `UnsupportedMediaType` for any other media type (or none) and
    `MalformedUpload` when the header is not Latin-1 text or breaks the grammar of
    `streamfx._upload.params`, or when the boundary is missing, longer than 70
    characters or not printable ASCII.
    """
    if isinstance(content_type, str):
        try:
            content_type = content_type.encode("latin-1")
        except UnicodeEncodeError:
            raise MalformedUpload("the Content-Type header is not Latin-1 text") from None
    if not content_type:
        raise UnsupportedMediaType("expected multipart/form-data, got no Content-Type")
    try:
        media, params = parse_params(content_type, "the Content-Type header")
    except MalformedUpload:
        media = content_type.split(b";", 1)[0].strip(b" \t").lower()
        if media != b"multipart/form-data":
            raise UnsupportedMediaType(
                f"expected multipart/form-data, got {shown(media.decode('latin-1'))}"
            ) from None
        raise
    if media != b"multipart/form-data":
        raise UnsupportedMediaType(f"expected multipart/form-data, got {media.decode('latin-1')}")
    value = params.get(b"boundary")
    if not value:
        raise MalformedUpload("the multipart/form-data Content-Type has no boundary")
    if not _BOUNDARY.fullmatch(value):
        raise MalformedUpload(
            f"the multipart boundary must be 1 to {MAX_BOUNDARY_LENGTH} printable ASCII "
            f"characters (RFC 2046), got {len(value)} bytes"
        )
    return value
