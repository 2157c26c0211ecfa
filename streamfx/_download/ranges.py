"""Byte ranges (RFC 9110 section 14): parsing ``Range`` into the spans to send.

`parse_range(value, size)` has three outcomes, and says which by its result:

- ``None``: the header is to be **ignored** and the whole representation sent with 200.
  That is the case for anything malformed (RFC 9110 14.2: a server MAY ignore Range,
  and a syntactically invalid one is not a request for a part), for a unit other than
  ``bytes`` (an origin server MUST ignore it), and for more than `max_ranges` ranges
  (a guard against requests built to make the server seek and frame thousands of
  parts; RFC 9110 14.2 allows ignoring them).
- ``[]``: the header is valid but no range in it is satisfiable: answer 416 with
  ``Content-Range: bytes */SIZE``. On an empty representation every range is.
- otherwise the ranges to send, as `ByteRange` values, sorted, with overlapping and
  adjacent ranges coalesced (RFC 9110 14.2 allows that, whatever order they came in),
  so no byte is sent twice and a request cannot multiply the response size.

Grammar accepted (RFC 9110 14.1.1; the unit is case-insensitive, list elements may be
empty and be surrounded by optional whitespace): ``bytes=0-499``, ``bytes=500-``
(open), ``bytes=-500`` (the last 500 bytes), and lists of those. ``first > last`` is
invalid, so the whole header is ignored. Digits are ASCII only. A ``last`` beyond the
end is clamped to the end.

Hand-written: the standard library has no Range parser, and the ones inside web
frameworks are not importable without the framework; it is a few pure functions,
tested with properties.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

DEFAULT_MAX_RANGES = 32
_SPEC = re.compile(r"([0-9]*)-([0-9]*)")
_OWS = " \t"
# Larger than any file; also keeps int() away from its digit limit on hostile input.
_HUGE = 10**18


@dataclass(frozen=True, slots=True, order=True)
class ByteRange:
    """Bytes ``start`` (inclusive) to ``stop`` (exclusive) of a representation."""

    start: int
    stop: int

    @property
    def length(self) -> int:
        return self.stop - self.start

    def content_range(self, size: int) -> str:
        """The ``Content-Range`` value for this range of a `size`-byte representation."""
        return f"bytes {self.start}-{self.stop - 1}/{size}"


def parse_range(
    value: str, size: int, *, max_ranges: int = DEFAULT_MAX_RANGES
) -> list[ByteRange] | None:
    """The ranges `value` asks for in a `size`-byte representation; see the module doc."""
    unit, equals, range_set = value.strip(_OWS).partition("=")
    if not equals or unit.lower() != "bytes":
        return None
    specs = [element.strip(_OWS) for element in range_set.split(",")]
    specs = [spec for spec in specs if spec]
    if not specs or len(specs) > max_ranges:
        return None
    satisfiable: list[ByteRange] = []
    for spec in specs:
        match = _SPEC.fullmatch(spec)
        if match is None:
            return None
        first, last = match.groups()
        if first:
            start = _number(first)
            if last and _number(last) < start:
                return None
            if start >= size:
                continue
            stop = min(_number(last) + 1, size) if last else size
        elif last:
            suffix = _number(last)
            if suffix == 0 or size == 0:
                continue
            start, stop = max(size - suffix, 0), size
        else:
            return None  # a lone "-"
        satisfiable.append(ByteRange(start, stop))
    return coalesce(satisfiable)


def _number(digits: str) -> int:
    significant = digits.lstrip("0") or "0"
    return int(significant) if len(significant) < 18 else _HUGE


def coalesce(ranges: list[ByteRange]) -> list[ByteRange]:
    """`ranges` sorted, with overlapping or adjacent ones merged."""
    merged: list[ByteRange] = []
    for current in sorted(ranges):
        if merged and current.start <= merged[-1].stop:
            previous = merged[-1]
            merged[-1] = ByteRange(previous.start, max(previous.stop, current.stop))
        else:
            merged.append(current)
    return merged


def multipart_byteranges(
    ranges: list[ByteRange], size: int, content_type: str, boundary: str
) -> tuple[list[bytes | ByteRange], int]:
    """The layout of a ``multipart/byteranges`` body (RFC 9110 14.6) and its length.

    Each part has ``Content-Type`` and ``Content-Range`` headers; the delimiter lines
    are ``--boundary`` and, after the last part, ``--boundary--``. The spans are the
    framing (``bytes``) and the ranges to read, in order.
    """
    spans: list[bytes | ByteRange] = []
    length = 0
    for index, byte_range in enumerate(ranges):
        head = (b"\r\n" if index else b"") + (
            f"--{boundary}\r\n"
            f"Content-Type: {content_type}\r\n"
            f"Content-Range: {byte_range.content_range(size)}\r\n\r\n"
        ).encode("latin-1")
        spans += (head, byte_range)
        length += len(head) + byte_range.length
    tail = f"\r\n--{boundary}--\r\n".encode("latin-1")
    spans.append(tail)
    return spans, length + len(tail)
