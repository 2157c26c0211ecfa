"""Tests for `parse_multipart` (streamfx/_multipart.py, streamfx/_part.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field

import pytest

import streamfx
from streamfx import (
    MalformedUpload,
    Part,
    UnsupportedMediaType,
    UploadError,
    UploadTooLarge,
    parse_multipart,
)

BOUNDARY = "----streamfxBoundary7MA4YWxkTrZu0gW"
CONTENT_TYPE = f"multipart/form-data; boundary={BOUNDARY}"
LIMITS = {"max_size": 10_000_000, "max_part_size": 1_000_000, "max_parts": 100}


@dataclass
class Spec:
    """One part to encode: a field (no filename) or a file."""

    name: str
    content: bytes
    filename: str | None = None
    content_type: str | None = None
    extra: list[tuple[str, str]] = field(default_factory=list)


def encode(parts: Sequence[Spec], boundary: str = BOUNDARY) -> bytes:
    """Encode `parts` as a multipart/form-data body (RFC 7578), by hand."""
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


class Body:
    """A request body that yields `data` in chunks of `size` and records what happened."""

    def __init__(self, data: bytes, size: int | Sequence[int] = 65536) -> None:
        self.data = data
        self.sizes = size
        self.sent = 0
        self.closed = False

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._chunks()

    async def _chunks(self) -> AsyncIterator[bytes]:
        try:
            offset = 0
            index = 0
            while offset < len(self.data):
                if isinstance(self.sizes, int):
                    size = self.sizes
                else:
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


async def collect(
    body: Body, content_type: str = CONTENT_TYPE, **kwargs: object
) -> list[tuple[str, str | None, str | None, bytes]]:
    limits: dict[str, object] = {**LIMITS, **kwargs}
    out = []
    async with parse_multipart(body, content_type, **limits) as parts:  # type: ignore[arg-type]
        async for part in parts:
            out.append((part.name, part.filename, part.content_type, await part.read()))
    return out


async def test_fields_and_files_in_order() -> None:
    body = Body(
        encode(
            [
                Spec("title", b"holiday"),
                Spec("photo", b"\x89PNG\r\n\x1a\n" * 100, "beach.png", "image/png"),
                Spec("empty", b""),
            ]
        )
    )
    assert await collect(body) == [
        ("title", None, None, b"holiday"),
        ("photo", "beach.png", "image/png", b"\x89PNG\r\n\x1a\n" * 100),
        ("empty", None, None, b""),
    ]
    assert body.closed


async def test_any_chunk_size_gives_the_same_parts() -> None:
    data = encode([Spec("a", b"x\r\n--" * 50), Spec("b", b"y" * 1000, "b.bin")])
    expected = await collect(Body(data))
    for size in (1, 2, 3, 5, 17, 64, 1000):
        assert await collect(Body(data, size)) == expected


async def test_part_too_large_is_raised_early() -> None:
    body = Body(encode([Spec("f", b"x" * 100_000, "f.bin")]), 1000)
    with pytest.raises(UploadTooLarge) as info:
        await collect(body, max_part_size=10_000)
    assert info.value.status == 413
    assert not body.fully_read
    assert body.closed


def test_exports() -> None:
    assert issubclass(UploadTooLarge, UploadError)
    assert issubclass(UnsupportedMediaType, UploadError)
    assert issubclass(MalformedUpload, UploadError)
    assert streamfx.Part is Part
