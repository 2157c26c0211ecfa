"""Multipart uploads in an aiohttp handler: `parts`, and the aiohttp HTTP
error an `UploadError` becomes (private; re-exported by `streamfx.adapters.aiohttp`).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from typing import Unpack

from aiohttp import StreamReader, web
from aiohttp.http_exceptions import HttpProcessingError

from streamfx._upload.errors import MalformedUpload, UploadError
from streamfx._upload.stream import PartStream
from streamfx.adapters._common import answer_error
from streamfx.adapters._upload_body import (
    MIN_RATE,
    READ_TIMEOUT,
    UploadOptions,
    parse_upload,
    timed_body,
)

logger = logging.getLogger("streamfx.adapters.aiohttp")


@asynccontextmanager
async def parts(
    request: web.BaseRequest,
    *,
    max_size: int,
    max_part_size: int,
    max_parts: int,
    read_timeout: float | None = READ_TIMEOUT,
    min_rate: int | None = MIN_RATE,
    **options: Unpack[UploadOptions],
) -> AsyncIterator[PartStream]:
    """The parts of `request`'s ``multipart/form-data`` body, read as they arrive.

        async with parts(request, max_size=..., max_part_size=...,
                         max_parts=...) as stream:
            async for part in stream:
                async for chunk in part: ...

    The limits, and every other keyword argument (`UploadOptions`: ``max_file_size``,
    ``allowed_types``, ``sniff``...), are `streamfx.parse_multipart`'s. A request whose
    ``Content-Length`` already passes `max_size` is refused before a byte is read. A
    client that sends nothing for `read_timeout` seconds, or slower than `min_rate`
    bytes per second, is refused with `UploadTimeout` (408; the rule every adapter
    shares, see `streamfx.adapters._upload_body`; None turns either off). A client
    that leaves before its body ends, or a body whose transfer framing breaks, is
    `MalformedUpload` (400), as on every adapter (aiohttp's own error is its cause).
    An `UploadError`, at the start or while the parts are read, leaves the block as
    aiohttp's ``HTTPRequestEntityTooLarge`` (413), ``HTTPUnsupportedMediaType`` (415),
    ``HTTPRequestTimeout`` (408) or ``HTTPBadRequest`` (400), whose short
    ``text/plain`` message is the error's; raised from a handler, aiohttp sends it,
    reads and drops what the client still sends for its ``lingering_time``, and closes.
    Code inside the block sees the `UploadError` first, so it can delete what it stored
    of the refused upload. The request body is never buffered here: a part is read when
    the caller reads it.
    """
    try:
        receive_chunk = partial(_receive_chunk, request.content)
        stream = parse_upload(
            timed_body(receive_chunk, read_timeout, min_rate),
            request.headers.get("Content-Type"),
            request.content_length,
            max_size=max_size,
            max_part_size=max_part_size,
            max_parts=max_parts,
            **options,
        )
    except UploadError as exc:
        raise upload_http_error(exc) from exc
    async with stream:
        try:
            yield stream
        except UploadError as exc:
            raise upload_http_error(exc) from exc


async def _receive_chunk(content: StreamReader) -> tuple[bytes, bool]:
    """The next chunk of the request body and whether more may follow (`ReceiveChunk`;
    aiohttp ends a body with an empty chunk). A body that cannot be read to its end
    (the client left: aiohttp's ``ConnectionResetError``; a broken chunked encoding or
    a body shorter than its ``Content-Length``: aiohttp's ``HttpProcessingError``) is
    `MalformedUpload`, as on every adapter, aiohttp's words kept in the cause."""
    try:
        chunk = await content.readany()
    except OSError as exc:
        raise MalformedUpload("the client disconnected before the upload ended") from exc
    except HttpProcessingError as exc:
        raise MalformedUpload("the request body could not be read") from exc
    return chunk, bool(chunk)


_UPLOAD_ERRORS: dict[int, type[web.HTTPClientError]] = {
    408: web.HTTPRequestTimeout,
    415: web.HTTPUnsupportedMediaType,
    400: web.HTTPBadRequest,
}


def upload_http_error(exc: UploadError) -> web.HTTPClientError:
    """aiohttp's HTTP error for `exc`, with the body and headers every adapter sends
    (`answer_error`: the detail is logged), which closes the connection."""
    answer = answer_error(exc, logger)
    text = answer.body.decode()  # utf-8, as its Content-Type says
    error: web.HTTPClientError
    if answer.status == 413:
        error = web.HTTPRequestEntityTooLarge(max_size=0, text=text, headers=answer.headers)
    else:
        error_class = _UPLOAD_ERRORS.get(answer.status, web.HTTPBadRequest)
        error = error_class(text=text, headers=answer.headers)
    # aiohttp sends the answer, reads and drops what the client still sends for its
    # `lingering_time` (10 s), then closes: the connection is not kept for the rest.
    error.force_close()
    return error
