"""Multipart uploads from an ASGI request: the request body fed to `parse_multipart`.

Re-exported by `streamfx.adapters.asgi`; answer the `UploadError` it raises with
``streamfx.adapters.asgi.error_response(exc)`` (413 / 415 / 400 / 408, plain text).
The declared length and the read rule are every adapter's
(`streamfx.adapters._upload_body`).

The connection after a refusal: `streamfx.adapters._upload_refusal` (the body taken
here is recorded for ``error_response``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol, Unpack

from streamfx._upload.errors import MalformedUpload
from streamfx._upload.multipart import PartStream, parse_multipart
from streamfx.adapters._asgi_types import Receive, Scope
from streamfx.adapters._upload_body import (
    MIN_RATE,
    READ_TIMEOUT,
    ReadRule,
    ReadTimer,
    UploadOptions,
    content_length,
    refuse_declared_length,
)
from streamfx.adapters._upload_refusal import BodyState, track_body


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
    rule = ReadRule(read_timeout, min_rate)
    content_type: bytes | None = None
    length: int | None = None
    for name, value in scope["headers"]:
        key = name.lower()
        if key == b"content-type" and content_type is None:
            content_type = value
        elif key == b"content-length" and length is None:
            length = content_length(value)
    state = track_body(length)
    stream = parse_multipart(  # checks the arguments; reads nothing yet
        _request_body(receive, rule, state),
        content_type,
        max_size=max_size,
        max_part_size=max_part_size,
        max_parts=max_parts,
        **options,
    )
    refuse_declared_length(length, max_size)
    return stream


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


async def _request_body(receive: Receive, rule: ReadRule, state: BodyState) -> AsyncIterator[bytes]:
    timer = ReadTimer(rule)
    try:
        while True:
            message = await timer.read(receive())
            if message["type"] == "http.disconnect":
                raise MalformedUpload("the client disconnected before the upload ended")
            body = message.get("body", b"")
            rule.wait_ended(len(body))
            state.took(len(body))
            if not message.get("more_body", False):
                state.ended = True
                if body:
                    yield body
                return
            if body:
                yield body
    finally:
        timer.stop()
