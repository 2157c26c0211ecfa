"""The framing side of an upload: bytes in, part events out, every per-part rule checked.

`Framing` wraps python-multipart's streaming `MultipartParser` (imported here, lazily:
``import streamfx`` works without it). Its callbacks turn what the parser finds into
events in `Framing.events`, in order: a `Part` (its headers are complete), ``bytes``
(a piece of its content), ``None`` (the part ended). It starts no task and holds only
the events of what it was last fed; `streamfx._upload.multipart.PartStream` decides
when to feed it.

The rules checked here, as the bytes are parsed (each raises an `UploadError` from
`Framing.write`, after the events of the bytes before the fault):

- at most `max_parts` parts: the part after them is refused as it begins;
- at most `max_part_size` bytes of content per part: the content up to the limit is
  emitted, then `UploadTooLarge`;
- at most `MAX_HEADER_BYTES` of header names and values per part;
- the part's headers (``Content-Disposition`` and the allowed types, see
  `streamfx._upload.part.describe_part`);
- the framing itself: python-multipart's `FormParserError` becomes `MalformedUpload`.

Also here, because they are checked before a body is touched: the limits given to
`parse_multipart` (`check_limit`) and the boundary of the ``Content-Type`` (`boundary`).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Final

from streamfx._upload.errors import MalformedUpload, UnsupportedMediaType, UploadTooLarge
from streamfx._upload.part import Part, describe_part

if TYPE_CHECKING:
    from python_multipart import MultipartParser

MAX_HEADER_BYTES: Final = 64 * 1024
"""The most header bytes one part may have (python-multipart limits each line too)."""

MAX_BOUNDARY_BYTES: Final = 256
"""RFC 2046 asks for at most 70; python-multipart accepts 256, and so does this module."""

Event = Part | bytes | None  # a part's headers are complete / content / the part ended


class Framing:
    """python-multipart's parser for one body, with the per-part limits (see above).

    `read` is handed to every `Part` it creates: it is how the part's content is read.
    """

    def __init__(
        self,
        boundary: bytes,
        max_part_size: int,
        max_parts: int,
        allowed_types: tuple[str, ...] | None,
        read: Callable[[Part], Awaitable[bytes]],
    ) -> None:
        from python_multipart import MultipartParser
        from python_multipart.exceptions import FormParserError

        self.events: deque[Event] = deque()
        self.ended = False
        """True once the closing boundary was parsed (what follows is never parsed)."""
        self._max_part_size = max_part_size
        self._max_parts = max_parts
        self._allowed_types = allowed_types
        self._read = read
        self._parse_error = FormParserError
        self._parts = 0
        self._part_size = 0
        self._header_bytes = 0
        self._field = bytearray()
        self._value = bytearray()
        self._headers: list[tuple[bytes, bytes]] = []
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

    def write(self, piece: bytes) -> None:
        """Parse `piece`, appending its events to `events`.

        Raises the `UploadError` of the first rule `piece` breaks; the events of the
        bytes before the fault are already in `events`. Do not write again after that.
        """
        try:
            self._parser.write(piece)
        except self._parse_error as exc:
            raise MalformedUpload(f"malformed multipart body: {exc}") from exc

    # -- parser callbacks (run inside write) ----------------------------------------

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
        self.events.append(Part(self._read, name, filename, content_type, headers))

    def _on_part_data(self, data: bytes, start: int, end: int) -> None:
        room = self._max_part_size - self._part_size
        if end - start > room:
            if room:
                self.events.append(data[start : start + room])
            raise UploadTooLarge(f"a part is larger than {self._max_part_size} bytes")
        self._part_size += end - start
        self.events.append(data[start:end])

    def _on_part_end(self) -> None:
        self.events.append(None)

    def _on_end(self) -> None:
        self.ended = True


def check_limit(name: str, value: object) -> int:
    """`value` if it is a positive int; else `TypeError` (not an int, or a bool) or
    `ValueError` (zero or negative), naming the argument."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be a positive int, not {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{name} must be a positive int, got {value}")
    return value


def boundary(content_type: str | bytes | None) -> bytes:
    """The boundary of a ``multipart/form-data`` ``Content-Type`` header.

    Raises `UnsupportedMediaType` for any other media type (or none) and
    `MalformedUpload` when the boundary is missing or longer than `MAX_BOUNDARY_BYTES`.
    """
    from python_multipart.multipart import parse_options_header

    if isinstance(content_type, bytes):
        content_type = content_type.decode("latin-1")
    media, params = parse_options_header(content_type)
    media = media.strip().lower()  # python-multipart 0.0.20 keeps the case as sent
    if media != b"multipart/form-data":
        sent = media.decode("latin-1") if media else "no Content-Type"
        raise UnsupportedMediaType(f"expected multipart/form-data, got {sent}")
    value = params.get(b"boundary")
    if not value:
        raise MalformedUpload("the multipart/form-data Content-Type has no boundary")
    if len(value) > MAX_BOUNDARY_BYTES:
        raise MalformedUpload(f"the multipart boundary is longer than {MAX_BOUNDARY_BYTES} bytes")
    return value
