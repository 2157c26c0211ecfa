"""Multipart bodies for the upload tests: encoding parts, a chunking body that records
what was read, and collecting what `parse_multipart` gives back."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from streamfx import UploadError, parse_multipart

BOUNDARY = "----streamfxBoundary7MA4YWxkTrZu0gW"
CONTENT_TYPE = f"multipart/form-data; boundary={BOUNDARY}"
LIMITS: dict[str, Any] = {"max_size": 10_000_000, "max_part_size": 1_000_000, "max_parts": 100}
KIB = 1024
DISPOSITION = b'Content-Disposition: form-data; name="a"\r\n'


@dataclass
class Spec:
    """One part to encode: a field (no filename) or a file."""

    name: str
    content: bytes
    filename: str | None = None
    content_type: str | None = None
    extra: list[tuple[str, str]] = field(default_factory=list)


def encode(parts: Sequence[Spec], boundary: str = BOUNDARY) -> bytes:
    """Encode `parts` as a multipart/form-data body (RFC 7578), UTF-8 headers as browsers
    send them."""
    out = bytearray()
    for spec in parts:
        out += f"--{boundary}\r\n".encode()
        disposition = f'form-data; name="{spec.name}"'
        if spec.filename is not None:
            disposition += f'; filename="{spec.filename}"'
        out += f"Content-Disposition: {disposition}\r\n".encode()
        if spec.content_type is not None:
            out += f"Content-Type: {spec.content_type}\r\n".encode()
        for key, value in spec.extra:
            out += f"{key}: {value}\r\n".encode()
        out += b"\r\n" + spec.content + b"\r\n"
    out += f"--{boundary}--\r\n".encode()
    return bytes(out)


def raw_part(headers: bytes, content: bytes, boundary: str = BOUNDARY) -> bytes:
    """One part with hand-written header lines (each ending in CRLF)."""
    return f"--{boundary}\r\n".encode() + headers + b"\r\n" + content + b"\r\n"


def closing(boundary: str = BOUNDARY) -> bytes:
    return f"--{boundary}--\r\n".encode()


class Body:
    """A request body that yields `data` in chunks (sizes taken in turn from `sizes`)
    and records how much was read and whether it was closed."""

    def __init__(self, data: bytes, sizes: int | Sequence[int] = 64 * KIB) -> None:
        self.data = data
        self.sizes = [sizes] if isinstance(sizes, int) else list(sizes)
        self.sent = 0
        self.closed = False

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._chunks()

    async def _chunks(self) -> AsyncIterator[bytes]:
        try:
            offset = 0
            index = 0
            while offset < len(self.data):
                size = self.sizes[index % len(self.sizes)]
                index += 1
                chunk = self.data[offset : offset + size]
                offset += len(chunk)
                self.sent += len(chunk)
                yield chunk
        finally:
            self.closed = True

    @property
    def fully_read(self) -> bool:
        return self.sent == len(self.data)


Result = list[tuple[str, str | None, str | None, bytes]]


async def collect(body: Body, content_type: str = CONTENT_TYPE, **kwargs: Any) -> Result:
    out: Result = []
    async with parse_multipart(body, content_type, **{**LIMITS, **kwargs}) as parts:
        async for part in parts:
            out.append((part.name, part.filename, part.content_type, await part.read()))
    return out


async def outcome(
    body: Any, content_type: str | bytes = CONTENT_TYPE, **limits: Any
) -> tuple[Result, UploadError | None]:
    """What a caller reading everything sees: the parts with the content received, then
    the error that ended it (or None)."""
    out: Result = []
    try:
        async with parse_multipart(body, content_type, **{**LIMITS, **limits}) as parts:
            async for part in parts:
                out.append((part.name, part.filename, part.content_type, b""))
                async for chunk in part:
                    name, filename, content_type_, content = out[-1]
                    out[-1] = (name, filename, content_type_, content + chunk)
    except UploadError as error:
        return out, error
    return out, None


async def collect_until_error(body: Body, **kwargs: Any) -> tuple[Result, UploadError]:
    """The parts read (with the content received so far) and the error that ended it."""
    out, error = await outcome(body, **kwargs)
    if error is None:
        raise AssertionError(f"no UploadError; parts read: {out}")
    return out, error


def expected(specs: Sequence[Spec]) -> Result:
    return [(s.name, s.filename, s.content_type, s.content) for s in specs]
