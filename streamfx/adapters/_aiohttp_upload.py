"""Multipart uploads in an aiohttp handler: `multipart_parts`, and the aiohttp HTTP
error an `UploadError` becomes (private; re-exported by `streamfx.adapters.aiohttp`).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager

from aiohttp import web

from streamfx._upload.errors import UploadError, UploadTooLarge
from streamfx._upload.multipart import PartStream, parse_multipart
from streamfx.adapters._common import answer_error

logger = logging.getLogger("streamfx.adapters.aiohttp")


@asynccontextmanager
async def multipart_parts(
    request: web.BaseRequest,
    *,
    max_size: int,
    max_part_size: int,
    max_parts: int,
    allowed_types: Iterable[str] | None = None,
) -> AsyncIterator[PartStream]:
    """The parts of `request`'s ``multipart/form-data`` body, read as they arrive.

        async with multipart_parts(request, max_size=..., max_part_size=...,
                                   max_parts=...) as parts:
            async for part in parts:
                async for chunk in part: ...

    The limits and `allowed_types` are `streamfx.parse_multipart`'s. A request whose
    ``Content-Length`` already passes `max_size` is refused before a byte is read.
    An `UploadError`, at the start or while the parts are read, leaves the block as
    aiohttp's ``HTTPRequestEntityTooLarge`` (413), ``HTTPUnsupportedMediaType`` (415)
    or ``HTTPBadRequest`` (400), whose short ``text/plain`` message is the error's;
    raised from a handler, aiohttp sends it. Code inside the block sees the
    `UploadError` first, so it can delete what it stored of the refused upload.
    The request body is never buffered here: a part is read when the caller reads it.
    """
    try:
        length = request.content_length
        if length is not None and length > max_size:
            raise UploadTooLarge(f"the upload is larger than {max_size} bytes")
        parts = parse_multipart(
            request.content.iter_any(),
            request.headers.get("Content-Type"),
            max_size=max_size,
            max_part_size=max_part_size,
            max_parts=max_parts,
            allowed_types=allowed_types,
        )
    except UploadError as exc:
        raise upload_http_error(exc) from exc
    async with parts:
        try:
            yield parts
        except UploadError as exc:
            raise upload_http_error(exc) from exc


_UPLOAD_ERRORS: dict[int, type[web.HTTPClientError]] = {
    415: web.HTTPUnsupportedMediaType,
    400: web.HTTPBadRequest,
}


def upload_http_error(exc: UploadError) -> web.HTTPClientError:
    """aiohttp's HTTP error for `exc`, with the body and headers every adapter sends
    (`answer_error`: the detail is logged)."""
    answer = answer_error(exc, logger)
    text = answer.body.decode()  # utf-8, as its Content-Type says
    if answer.status == 413:
        # The rest of the body is not wanted: do not keep the connection for it.
        headers = [*answer.headers, ("connection", "close")]
        return web.HTTPRequestEntityTooLarge(max_size=0, text=text, headers=headers)
    error_class = _UPLOAD_ERRORS.get(answer.status, web.HTTPBadRequest)
    return error_class(text=text, headers=answer.headers)
