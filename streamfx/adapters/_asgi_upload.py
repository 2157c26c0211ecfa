"""Multipart uploads from an ASGI request: the request body fed to `parse_multipart`.

Re-exported by `streamfx.adapters.asgi`; answer the `UploadError` it raises with
``streamfx.adapters.asgi.error_response(exc)`` (413 / 415 / 400 / 408, plain text).
The declared length and the read rule are every adapter's
(`streamfx.adapters._upload_body`).

The connection after a refusal: `streamfx.adapters._upload_refusal` (the body taken
here is recorded for ``error_response``).
"""

from __future__ import annotations

from functools import partial
from typing import Protocol, Unpack

from streamfx._upload.errors import MalformedUpload
from streamfx._upload.stream import PartStream
from streamfx.adapters._asgi_types import Receive, Scope
from streamfx.adapters._upload_body import (
    MIN_RATE,
    READ_TIMEOUT,
    UploadOptions,
    content_length,
    parse_upload,
    timed_body,
)
from streamfx.adapters._upload_refusal import track_body


def parts_from_asgi(
    scope: Scope,
    receive: Receive,
    *,
    max_size: int,
    max_part_size: int,
    max_parts: int,
    read_timeout: float | None = READ_TIMEOUT,
    min_rate: int | None = MIN_RATE,
    **options: Unpack[UploadOptions],
) -> PartStream:
    """The parts of the ``multipart/form-data`` request body of `scope`, read from
    `receive` as the caller asks for them. The limits, and every other keyword argument
    (`UploadOptions`: ``max_file_size``, ``allowed_types``, ``sniff``...), are
    `streamfx.parse_multipart`'s.

    Raises at once: `UploadTooLarge` (413) when the ``Content-Length`` is larger than
    `max_size` (not a byte of the body is read), `UnsupportedMediaType` /
    `MalformedUpload` for a request that is not multipart or has no boundary. While
    iterating: `UploadTooLarge` (413), `UnsupportedMediaType` (415), `MalformedUpload`
    (400; also a client that disconnects before the body ends), and `UploadTimeout`
    (408) when the client sends nothing for `read_timeout` seconds or sends slower
    than `min_rate` bytes per second (see `streamfx.adapters._upload_body`; None turns
    either off). Answer any `UploadError` with ``error_response(exc)``. Nothing is
    buffered or written to disk here: a refused upload leaves nothing behind but what
    the caller kept.
    """
    receive_chunk = partial(_receive_chunk, receive)
    content_type: bytes | None = None
    length: int | None = None
    for name, value in scope["headers"]:
        key = name.lower()
        if key == b"content-type" and content_type is None:
            content_type = value
        elif key == b"content-length" and length is None:
            length = content_length(value)
    body = timed_body(receive_chunk, read_timeout, min_rate, track_body(length))
    return parse_upload(
        body,
        content_type,
        length,
        max_size=max_size,
        max_part_size=max_part_size,
        max_parts=max_parts,
        **options,
    )


class HasASGIRequest(Protocol):
    """A framework request that exposes its ASGI scope and receive (Starlette, FastAPI)."""

    @property
    def scope(self) -> Scope: ...

    @property
    def receive(self) -> Receive: ...


def parts(
    request: HasASGIRequest,
    *,
    max_size: int,
    max_part_size: int,
    max_parts: int,
    read_timeout: float | None = READ_TIMEOUT,
    min_rate: int | None = MIN_RATE,
    **options: Unpack[UploadOptions],
) -> PartStream:
    """`parts_from_asgi` for a Starlette or FastAPI ``Request`` whose body was not read."""
    return parts_from_asgi(
        request.scope,
        request.receive,
        max_size=max_size,
        max_part_size=max_part_size,
        max_parts=max_parts,
        read_timeout=read_timeout,
        min_rate=min_rate,
        **options,
    )


async def _receive_chunk(receive: Receive) -> tuple[bytes, bool]:
    """The next ``http.request`` message's body and whether more follows (`ReceiveChunk`);
    ``http.disconnect`` before the end is `MalformedUpload`."""
    message = await receive()
    if message["type"] == "http.disconnect":
        raise MalformedUpload("the client disconnected before the upload ended")
    return message.get("body", b""), message.get("more_body", False)
