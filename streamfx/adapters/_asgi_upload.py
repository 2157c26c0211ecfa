"""Multipart uploads from an ASGI request: the request body fed to `parse_multipart`.

Re-exported by `streamfx.adapters.asgi`; answer the `UploadError` it raises with
``streamfx.adapters.asgi.error_response(exc)`` (413 / 415 / 400, plain text).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from typing import Protocol

from streamfx._upload.errors import MalformedUpload
from streamfx._upload.multipart import PartStream, parse_multipart
from streamfx.adapters._asgi_types import Receive, Scope


def parts_from_asgi(
    scope: Scope,
    receive: Receive,
    *,
    max_size: int,
    max_part_size: int,
    max_parts: int,
    allowed_types: Iterable[str] | None = None,
) -> PartStream:
    """The parts of the ``multipart/form-data`` request body of `scope`, read from
    `receive` as the caller asks for them (see `streamfx.parse_multipart`).

    Raises at once `UnsupportedMediaType` / `MalformedUpload` for a request that is not
    multipart or has no boundary, and, while iterating, `UploadTooLarge` (413),
    `UnsupportedMediaType` (415) or `MalformedUpload` (400); a client that disconnects
    before the body ends is a `MalformedUpload` too. Answer any `UploadError` with
    ``error_response(exc)``. Nothing is buffered or written to disk here: a refused
    upload leaves nothing behind but what the caller kept.
    """
    content_type = None
    for name, value in scope["headers"]:
        if name.lower() == b"content-type":
            content_type = value
            break
    return parse_multipart(
        _request_body(receive),
        content_type,
        max_size=max_size,
        max_part_size=max_part_size,
        max_parts=max_parts,
        allowed_types=allowed_types,
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
    allowed_types: Iterable[str] | None = None,
) -> PartStream:
    """`parts_from_asgi` for a Starlette or FastAPI ``Request`` whose body was not read."""
    return parts_from_asgi(
        request.scope,
        request.receive,
        max_size=max_size,
        max_part_size=max_part_size,
        max_parts=max_parts,
        allowed_types=allowed_types,
    )


async def _request_body(receive: Receive) -> AsyncIterator[bytes]:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise MalformedUpload("the client disconnected before the upload ended")
        body = message.get("body", b"")
        if body:
            yield body
        if not message.get("more_body", False):
            return
